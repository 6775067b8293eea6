//! The claim types credentials attest.

use std::fmt;
use std::str::FromStr;

/// What a credential attests about its subject. The registry stores claims as small
/// integers (0 to 255); these are the ones it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Claim {
    /// The subject passed know-your-customer checks.
    Kyc = 0,
    /// The subject is not on a sanctions list.
    NotSanctioned = 1,
    /// The subject is an accredited investor.
    Accredited = 2,
    /// The subject is a unique human (proof of personhood).
    Human = 3,
}

impl Claim {
    /// All named claims.
    pub const ALL: [Claim; 4] = [Claim::Kyc, Claim::NotSanctioned, Claim::Accredited, Claim::Human];

    /// The claim's number in the registry.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The claim with number `id`, if it has a name.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The bit of this claim in a claim mask.
    pub fn bit(self) -> alloy_primitives::U256 {
        alloy_primitives::U256::from(1u8) << self.id()
    }

    /// A claim mask with every claim of `claims` set.
    pub fn mask(claims: &[Claim]) -> alloy_primitives::U256 {
        claims.iter().fold(alloy_primitives::U256::ZERO, |mask, c| mask | c.bit())
    }

    /// The claim's name (`kyc`, `not-sanctioned`, `accredited`, `human`).
    pub fn name(self) -> &'static str {
        match self {
            Claim::Kyc => "kyc",
            Claim::NotSanctioned => "not-sanctioned",
            Claim::Accredited => "accredited",
            Claim::Human => "human",
        }
    }

    /// The name of claim number `id`, or the number if it has none.
    pub fn describe(id: u8) -> String {
        Self::from_id(id).map_or_else(|| format!("claim {id}"), |c| c.name().to_string())
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Claim {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown claim `{s}` (kyc, not-sanctioned, accredited, human)"))
    }
}
