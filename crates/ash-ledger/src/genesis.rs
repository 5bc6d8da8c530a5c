//! The genesis: what a network is (its mint authorities, witnesses and parameters) and its id,
//! which every signed byte string of the ledger begins with.

use std::collections::{BTreeMap, BTreeSet};

use ash_identity::NodeId;

use crate::codec::Writer;
use crate::entry::{Hash, tagged_hash};

/// How long after a reservation's deadline a payment may still be collected, by default (7 days).
pub const DEFAULT_CLAIM_WINDOW_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most authorities or witnesses a genesis may name.
pub(crate) const MAX_GENESIS_IDS: usize = 64;

/// A network's definition. Everyone on a network holds the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    /// 1–64 bytes of `a-z 0-9 . _ -`, for people.
    pub name: String,
    /// When the network was created (ms since the Unix epoch).
    pub created_at: u64,
    /// Identities whose mints create credits.
    pub authorities: BTreeSet<NodeId>,
    /// Identities whose signatures make a checkpoint.
    pub witnesses: BTreeSet<NodeId>,
    /// Distinct witness signatures a checkpoint needs.
    pub checkpoint_quorum: u16,
    /// How long after a deadline a payment may be collected (ms).
    pub claim_window_ms: u64,
    /// Credits the mint authority's node gives each new identity; `None`: its operator
    /// chooses. Part of the id when set.
    pub signup_bonus: Option<u64>,
    /// What a new identity shows the mint authority for its signup bonus. Part of the id
    /// unless [`SignupCost::None`].
    pub signup_cost: SignupCost,
    /// Credits per job by model tier; `None`: [`DEFAULT_PRICES`]. Part of the id when set.
    pub prices: Option<BTreeMap<String, u64>>,
    /// Multiaddrs of nodes to ask first (`/ip4/…/tcp/…/p2p/<peer id>`). Hints, not rules: not
    /// part of the id, so the list can change without making another network.
    pub bootstrap: Vec<String>,
    id: Hash,
}

/// The price of a signup, so that identities cost their maker something (the genesis's
/// `signup_cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignupCost {
    /// Every identity with a profile receives the bonus.
    #[default]
    None,
    /// A single-use code one of the mint authorities issued (`ash admin invite`).
    Invite,
    /// A proof of work: a nonce with which `H("ash/signup/work/v1", network id ‖ node id ‖
    /// nonce)` starts with `bits` zero bits (about 2^bits hashes to find).
    Work {
        /// Leading zero bits, [`MIN_WORK_BITS`]–[`MAX_WORK_BITS`].
        bits: u8,
    },
}

impl SignupCost {
    /// `none`, `invite` or `pow`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Invite => "invite",
            Self::Work { .. } => "pow",
        }
    }
}

/// Fewest leading zero bits a proof-of-work signup may ask.
pub const MIN_WORK_BITS: u8 = 8;
/// Most leading zero bits a proof-of-work signup may ask (about 4 billion hashes).
pub const MAX_WORK_BITS: u8 = 32;

/// The seed's prices, credits per job by model tier, for networks whose genesis sets none;
/// and `machine`, the price of a job whose model calls the requester answers with its own key
/// (the acceptor sells machine time only).
pub const DEFAULT_PRICES: [(&str, u64); 5] =
    [("haiku", 2), ("sonnet", 6), ("opus", 30), ("codex", 2), ("machine", 1)];

/// Most tiers a genesis prices.
const MAX_TIERS: usize = 32;

/// A genesis that is not valid, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("genesis: {0}")]
pub struct GenesisError(pub String);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    created_at: u64,
    authorities: Vec<String>,
    #[serde(default)]
    witnesses: Option<Vec<String>>,
    #[serde(default)]
    checkpoint_quorum: Option<u16>,
    #[serde(default)]
    claim_window_ms: Option<u64>,
    #[serde(default)]
    signup_bonus: Option<u64>,
    #[serde(default)]
    signup_cost: Option<String>,
    #[serde(default)]
    signup_pow_bits: Option<u8>,
    #[serde(default)]
    prices: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    bootstrap: Vec<String>,
    /// The network id the file claims; checked against its contents.
    #[serde(default)]
    id: Option<String>,
}

/// Most bootstrap addresses a genesis lists.
const MAX_BOOTSTRAP: usize = 64;

impl Genesis {
    /// A genesis with `authorities` as its witnesses, a majority quorum and the default window.
    pub fn new(
        name: &str,
        created_at: u64,
        authorities: BTreeSet<NodeId>,
    ) -> Result<Self, GenesisError> {
        let quorum = majority(authorities.len());
        Self::with(
            name,
            created_at,
            authorities.clone(),
            authorities,
            quorum,
            DEFAULT_CLAIM_WINDOW_MS,
        )
    }

    /// A genesis with every parameter given; checks them all.
    pub fn with(
        name: &str,
        created_at: u64,
        authorities: BTreeSet<NodeId>,
        witnesses: BTreeSet<NodeId>,
        checkpoint_quorum: u16,
        claim_window_ms: u64,
    ) -> Result<Self, GenesisError> {
        let fail = |what: String| Err(GenesisError(what));
        if !valid_name(name) {
            return fail(format!("name {name:?} must be 1–64 bytes of a-z 0-9 . _ -"));
        }
        if authorities.is_empty() || authorities.len() > MAX_GENESIS_IDS {
            return fail(format!("`authorities` must name 1–{MAX_GENESIS_IDS} identities"));
        }
        if witnesses.is_empty() || witnesses.len() > MAX_GENESIS_IDS {
            return fail(format!("`witnesses` must name 1–{MAX_GENESIS_IDS} identities"));
        }
        if checkpoint_quorum == 0 || usize::from(checkpoint_quorum) > witnesses.len() {
            return fail(format!(
                "`checkpoint_quorum` {checkpoint_quorum} must be between 1 and the {} witnesses",
                witnesses.len()
            ));
        }
        if claim_window_ms == 0 {
            return fail("`claim_window_ms` must be above 0".into());
        }
        let mut genesis = Self {
            name: name.to_owned(),
            created_at,
            authorities,
            witnesses,
            checkpoint_quorum,
            claim_window_ms,
            signup_bonus: None,
            signup_cost: SignupCost::None,
            prices: None,
            bootstrap: Vec::new(),
            id: Hash::default(),
        };
        genesis.rehash();
        Ok(genesis)
    }

    /// This network with a signup bonus: another network (the bonus is part of the id).
    pub fn with_signup_bonus(mut self, bonus: u64) -> Result<Self, GenesisError> {
        if bonus == 0 || bonus > crate::Credits::MAX_ENTRY.get() {
            return Err(GenesisError(format!(
                "`signup_bonus` {bonus} must be between 1 and {}",
                crate::Credits::MAX_ENTRY.get()
            )));
        }
        self.signup_bonus = Some(bonus);
        self.rehash();
        Ok(self)
    }

    /// This network with a signup cost: another network unless [`SignupCost::None`].
    pub fn with_signup_cost(mut self, cost: SignupCost) -> Result<Self, GenesisError> {
        if let SignupCost::Work { bits } = cost
            && !(MIN_WORK_BITS..=MAX_WORK_BITS).contains(&bits)
        {
            return Err(GenesisError(format!(
                "`signup_pow_bits` {bits} must be between {MIN_WORK_BITS} and {MAX_WORK_BITS}"
            )));
        }
        self.signup_cost = cost;
        self.rehash();
        Ok(self)
    }

    /// This network with these prices (credits per job by tier): another network.
    pub fn with_prices(mut self, prices: BTreeMap<String, u64>) -> Result<Self, GenesisError> {
        if prices.is_empty() || prices.len() > MAX_TIERS {
            return Err(GenesisError(format!("`prices` must name 1–{MAX_TIERS} tiers")));
        }
        for (tier, price) in &prices {
            if !valid_name(tier) || tier.len() > 32 {
                return Err(GenesisError(format!(
                    "`prices`: tier {tier:?} must be 1–32 bytes of a-z 0-9 . _ -"
                )));
            }
            if *price == 0 || *price > crate::Credits::MAX_ENTRY.get() {
                return Err(GenesisError(format!(
                    "`prices`: {tier} = {price} must be between 1 and {}",
                    crate::Credits::MAX_ENTRY.get()
                )));
            }
        }
        self.prices = Some(prices);
        self.rehash();
        Ok(self)
    }

    /// Credits per job of `tier` on this network, if it has that tier.
    pub fn price(&self, tier: &str) -> Option<u64> {
        match &self.prices {
            Some(prices) => prices.get(tier).copied(),
            None => DEFAULT_PRICES.iter().find(|(t, _)| *t == tier).map(|(_, p)| *p),
        }
    }

    /// Every tier and its price.
    pub fn price_list(&self) -> BTreeMap<String, u64> {
        match &self.prices {
            Some(prices) => prices.clone(),
            None => DEFAULT_PRICES.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect(),
        }
    }

    /// Whether `nonce` is `who`'s proof of work on this network (false unless the network
    /// asks for one).
    pub fn check_work(&self, who: &NodeId, nonce: u64) -> bool {
        match self.signup_cost {
            SignupCost::Work { bits } => work_bits(&self.id, who, nonce) >= u32::from(bits),
            SignupCost::None | SignupCost::Invite => false,
        }
    }

    /// Finds `who`'s proof of work, trying nonces from `start` until `give_up` says so
    /// (called every 65,536 tries with the count so far); `None` if the network asks for
    /// none or it gave up.
    pub fn solve_work(
        &self,
        who: &NodeId,
        start: u64,
        mut give_up: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let SignupCost::Work { bits } = self.signup_cost else { return None };
        let mut nonce = start;
        loop {
            if work_bits(&self.id, who, nonce) >= u32::from(bits) {
                return Some(nonce);
            }
            nonce = nonce.wrapping_add(1);
            let tried = nonce.wrapping_sub(start);
            if tried.is_multiple_of(1 << 16) && give_up(tried) {
                return None;
            }
        }
    }

    /// This network with these bootstrap addresses (the id does not change).
    pub fn with_bootstrap(mut self, bootstrap: Vec<String>) -> Result<Self, GenesisError> {
        if bootstrap.len() > MAX_BOOTSTRAP {
            return Err(GenesisError(format!(
                "`bootstrap` lists more than {MAX_BOOTSTRAP} addresses"
            )));
        }
        for address in &bootstrap {
            if !address.starts_with('/') || !address.contains("/p2p/") || address.len() > 512 {
                return Err(GenesisError(format!(
                    "`bootstrap`: {address:?} is not a multiaddr ending in /p2p/<peer id>"
                )));
            }
        }
        self.bootstrap = bootstrap;
        Ok(self)
    }

    /// Reads a genesis file (TOML, see docs/ledger-format.md).
    pub fn from_toml(text: &str) -> Result<Self, GenesisError> {
        let file: File = toml::from_str(text).map_err(|e| GenesisError(e.to_string()))?;
        let ids = |field: &str, list: &[String]| -> Result<BTreeSet<NodeId>, GenesisError> {
            let mut set = BTreeSet::new();
            for text in list {
                let id = text
                    .parse::<NodeId>()
                    .map_err(|e| GenesisError(format!("`{field}`: {text:?}: {e}")))?;
                if !set.insert(id) {
                    return Err(GenesisError(format!("`{field}` names {text} twice")));
                }
            }
            Ok(set)
        };
        let authorities = ids("authorities", &file.authorities)?;
        let witnesses = match &file.witnesses {
            Some(list) => ids("witnesses", list)?,
            None => authorities.clone(),
        };
        let quorum = file.checkpoint_quorum.unwrap_or_else(|| majority(witnesses.len()));
        let mut genesis = Self::with(
            &file.name,
            file.created_at,
            authorities,
            witnesses,
            quorum,
            file.claim_window_ms.unwrap_or(DEFAULT_CLAIM_WINDOW_MS),
        )?;
        if let Some(bonus) = file.signup_bonus {
            genesis = genesis.with_signup_bonus(bonus)?;
        }
        let cost = match (file.signup_cost.as_deref(), file.signup_pow_bits) {
            (None | Some("none"), None) => SignupCost::None,
            (Some("invite"), None) => SignupCost::Invite,
            (Some("pow"), Some(bits)) => SignupCost::Work { bits },
            (Some("pow"), None) => {
                return Err(GenesisError("`signup_cost` \"pow\" needs `signup_pow_bits`".into()));
            }
            (None | Some("none" | "invite"), Some(_)) => {
                return Err(GenesisError(
                    "`signup_pow_bits` is only for `signup_cost = \"pow\"`".into(),
                ));
            }
            (Some(other), _) => {
                return Err(GenesisError(format!(
                    "`signup_cost` {other:?} must be \"none\", \"invite\" or \"pow\""
                )));
            }
        };
        genesis = genesis.with_signup_cost(cost)?;
        if let Some(prices) = file.prices {
            genesis = genesis.with_prices(prices)?;
        }
        genesis = genesis.with_bootstrap(file.bootstrap)?;
        if let Some(claimed) = file.id
            && claimed != genesis.id.to_string()
        {
            return Err(GenesisError(format!(
                "`id` {claimed} does not match the file's contents, which make network {}: the file \
                 was changed, or is not the network it claims",
                genesis.id
            )));
        }
        Ok(genesis)
    }

    /// The genesis as a TOML file that [`Genesis::from_toml`] reads back to the same network.
    pub fn to_toml(&self) -> String {
        let list = |set: &BTreeSet<NodeId>| {
            set.iter().map(|id| format!("\n    \"{id}\",")).collect::<String>()
        };
        let mut text = format!(
            "# ash network genesis (ledger format 2)\n\
             # `id` is the hash of what follows but `bootstrap`; a file whose id does not match is refused.\n\
             id = \"{}\"\nname = \"{}\"\ncreated_at = {}\nauthorities = [{}\n]\nwitnesses = [{}\n]\n\
             checkpoint_quorum = {}\nclaim_window_ms = {}\n",
            self.id,
            self.name,
            self.created_at,
            list(&self.authorities),
            list(&self.witnesses),
            self.checkpoint_quorum,
            self.claim_window_ms,
        );
        if let Some(bonus) = self.signup_bonus {
            text.push_str(&format!("signup_bonus = {bonus}\n"));
        }
        match self.signup_cost {
            SignupCost::None => {}
            SignupCost::Invite => text.push_str("signup_cost = \"invite\"\n"),
            SignupCost::Work { bits } => {
                text.push_str(&format!("signup_cost = \"pow\"\nsignup_pow_bits = {bits}\n"));
            }
        }
        text.push_str("bootstrap = [");
        for address in &self.bootstrap {
            text.push_str(&format!("\n    \"{address}\","));
        }
        text.push_str(if self.bootstrap.is_empty() { "]\n" } else { "\n]\n" });
        if let Some(prices) = &self.prices {
            text.push_str("\n[prices]\n");
            for (tier, price) in prices {
                text.push_str(&format!("{tier} = {price}\n"));
            }
        }
        text
    }

    /// The canonical bytes the network id is the hash of.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(u8::try_from(self.name.len()).unwrap_or(u8::MAX)).bytes(self.name.as_bytes());
        w.u64(self.created_at);
        for set in [&self.authorities, &self.witnesses] {
            w.u16(u16::try_from(set.len()).unwrap_or(u16::MAX));
            for id in set {
                w.id(*id);
            }
        }
        w.u16(self.checkpoint_quorum).u64(self.claim_window_ms);
        // Added later, and only when set, so that the ids of networks without it stay.
        if let Some(bonus) = self.signup_bonus {
            w.bytes(b"signup_bonus").u64(bonus);
        }
        match self.signup_cost {
            SignupCost::None => {}
            SignupCost::Invite => {
                w.bytes(b"signup_cost").u8(1);
            }
            SignupCost::Work { bits } => {
                w.bytes(b"signup_cost").u8(2).u8(bits);
            }
        }
        if let Some(prices) = &self.prices {
            w.bytes(b"prices").u16(u16::try_from(prices.len()).unwrap_or(u16::MAX));
            for (tier, price) in prices {
                w.u8(u8::try_from(tier.len()).unwrap_or(u8::MAX))
                    .bytes(tier.as_bytes())
                    .u64(*price);
            }
        }
        w.0
    }

    /// Sets the id from the fields that make it, after one of them changed.
    fn rehash(&mut self) {
        self.id = tagged_hash(b"ash/ledger/network/v2", &self.to_bytes());
    }

    /// The network id: `H("ash/ledger/network/v2", genesis bytes)`.
    pub const fn id(&self) -> Hash {
        self.id
    }

    /// Whether `id` is a mint authority of this network.
    pub fn is_authority(&self, id: &NodeId) -> bool {
        self.authorities.contains(id)
    }
}

/// Leading zero bits of `H("ash/signup/work/v1", network ‖ who ‖ nonce)`.
fn work_bits(network: &Hash, who: &NodeId, nonce: u64) -> u32 {
    let mut bytes = [0u8; 72];
    bytes[..32].copy_from_slice(&network.0);
    bytes[32..64].copy_from_slice(who.as_bytes());
    bytes[64..].copy_from_slice(&nonce.to_be_bytes());
    let hash = tagged_hash(b"ash/signup/work/v1", &bytes);
    let mut bits = 0;
    for byte in hash.0 {
        bits += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    bits
}

const fn majority(n: usize) -> u16 {
    let half = n / 2 + 1;
    if half > u16::MAX as usize { u16::MAX } else { half as u16 }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        })
}
