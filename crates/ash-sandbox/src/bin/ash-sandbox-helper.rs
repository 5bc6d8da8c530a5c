//! The sandbox helper as its own small binary, for this crate's tests and benchmarks; `ash`
//! itself re-executes its own binary instead.

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == ash_sandbox::HELPER_ARG) {
        ash_sandbox::helper_main();
    }
    std::process::exit(2);
}
