//! placeholder
/// Builder.
#[derive(Debug)]
pub struct AgentSpecBuilder;
