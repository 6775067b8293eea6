//! The `CredentialRegistry` storage layout (see `docs/compliance.md`): slot computation and
//! record encoding, for the hook and for writing pre-states with credentials in place.
//!
//! `.` below is the concatenation of two 32-byte words Solidity hashes for mapping keys
//! (addresses and small integers left-padded with zeros).
//!
//! | slot | variable | content |
//! |---|---|---|
//! | 0 | `admin` | address |
//! | keccak(issuer . 1) | `issuers[issuer].claimMask` | uint256, bit c = may attest claim c |
//! | keccak(issuer . 1) + 1 | `issuers[issuer].active`, `.selfAttest` | bools (lowest byte, next byte) |
//! | keccak(claim . keccak(subject . 2)) | `credentials[subject][claim]` | packed [`Credential`] |
//! | keccak(pool . 3) | `poolPolicy[pool]` | uint256 claim mask, non-zero = gated |
//! | keccak(pool . 4) | `poolOptions[pool]` | uint256, bit 0 = [`CALLER_CHAIN`] |
//! | keccak(router . 5) | `approvedRouter[router]` | bool (lowest byte) |

use alloy_primitives::{keccak256, Address, B256, U256};

/// Slot of `admin`.
pub const ADMIN_SLOT: U256 = U256::ZERO;
/// Base slot of the `issuers` mapping.
pub const ISSUERS_SLOT: u64 = 1;
/// Base slot of the `credentials` mapping.
pub const CREDENTIALS_SLOT: u64 = 2;
/// Base slot of the `poolPolicy` mapping.
pub const POOL_POLICY_SLOT: u64 = 3;
/// Base slot of the `poolOptions` mapping.
pub const POOL_OPTIONS_SLOT: u64 = 4;
/// Base slot of the `approvedRouter` mapping.
pub const APPROVED_ROUTER_SLOT: u64 = 5;

/// `poolOptions` bit: every contract between the sender and the pool must hold the pool's
/// required claims too, or be an approved router.
pub const CALLER_CHAIN: u64 = 1;

/// keccak256(key . slot) as a slot number.
fn mapping_slot(key: B256, slot: U256) -> U256 {
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(key.as_slice());
    preimage[32..].copy_from_slice(&slot.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(preimage).0)
}

fn address_key(address: Address) -> B256 {
    address.into_word()
}

/// Slot of `issuers[issuer].claimMask`; `active` is the next slot.
pub fn issuer_slot(issuer: Address) -> U256 {
    mapping_slot(address_key(issuer), U256::from(ISSUERS_SLOT))
}

/// Slot of `credentials[subject][claim]`.
pub fn credential_slot(subject: Address, claim: u8) -> U256 {
    let inner = mapping_slot(address_key(subject), U256::from(CREDENTIALS_SLOT));
    mapping_slot(B256::from(U256::from(claim)), inner)
}

/// Slot of `poolPolicy[pool]`.
pub fn pool_policy_slot(pool: Address) -> U256 {
    mapping_slot(address_key(pool), U256::from(POOL_POLICY_SLOT))
}

/// Slot of `poolOptions[pool]`.
pub fn pool_options_slot(pool: Address) -> U256 {
    mapping_slot(address_key(pool), U256::from(POOL_OPTIONS_SLOT))
}

/// Slot of `approvedRouter[router]`.
pub fn approved_router_slot(router: Address) -> U256 {
    mapping_slot(address_key(router), U256::from(APPROVED_ROUTER_SLOT))
}

/// The issuer word at `issuer_slot(issuer) + 1`: whether the issuer is active and whether it
/// may issue credentials to itself.
pub fn issuer_flags(word: U256) -> (bool, bool) {
    let bytes = word.to_be_bytes::<32>();
    (bytes[31] != 0, bytes[30] != 0)
}

/// One credential as the registry stores it: packed from the low end, `issuer` (20 bytes),
/// `expiresAt` (8 bytes), `revoked` (1 byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Who issued it; zero if there is none.
    pub issuer: Address,
    /// Unix time from which it is no longer valid (valid while `expires_at > timestamp`).
    pub expires_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl Credential {
    /// Decodes a storage word.
    pub fn decode(word: U256) -> Self {
        let bytes = word.to_be_bytes::<32>();
        Self {
            issuer: Address::from_slice(&bytes[12..32]),
            expires_at: u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes")),
            revoked: bytes[3] != 0,
        }
    }

    /// Encodes into a storage word.
    pub fn encode(&self) -> U256 {
        let mut bytes = [0u8; 32];
        bytes[12..32].copy_from_slice(self.issuer.as_slice());
        bytes[4..12].copy_from_slice(&self.expires_at.to_be_bytes());
        bytes[3] = u8::from(self.revoked);
        U256::from_be_bytes(bytes)
    }
}

/// Storage of a registry, built without running transactions.
#[derive(Clone, Debug, Default)]
pub struct RegistryState {
    slots: Vec<(U256, U256)>,
}

impl RegistryState {
    /// A registry administered by `admin`.
    pub fn new(admin: Address) -> Self {
        Self { slots: vec![(ADMIN_SLOT, U256::from_be_slice(admin.as_slice()))] }
    }

    /// Sets issuer `issuer`'s claim mask and whether it is active (and may not attest
    /// itself).
    pub fn issuer(self, issuer: Address, claim_mask: U256, active: bool) -> Self {
        self.issuer_with(issuer, claim_mask, active, false)
    }

    /// Sets issuer `issuer`'s claim mask, whether it is active and whether it may issue
    /// credentials to itself.
    pub fn issuer_with(
        mut self,
        issuer: Address,
        claim_mask: U256,
        active: bool,
        self_attest: bool,
    ) -> Self {
        let base = issuer_slot(issuer);
        let flags = u16::from(active) | (u16::from(self_attest) << 8);
        self.slots.push((base, claim_mask));
        self.slots.push((base + U256::from(1), U256::from(flags)));
        self
    }

    /// Stores a credential of `subject` for `claim`.
    pub fn credential(mut self, subject: Address, claim: u8, credential: Credential) -> Self {
        self.slots.push((credential_slot(subject, claim), credential.encode()));
        self
    }

    /// Sets the claims `pool` requires.
    pub fn policy(mut self, pool: Address, required_claims: U256) -> Self {
        self.slots.push((pool_policy_slot(pool), required_claims));
        self
    }

    /// Sets `pool`'s options (bits such as [`CALLER_CHAIN`]).
    pub fn options(mut self, pool: Address, options: u64) -> Self {
        self.slots.push((pool_options_slot(pool), U256::from(options)));
        self
    }

    /// Approves `router` (or withdraws the approval) for pools with [`CALLER_CHAIN`].
    pub fn router(mut self, router: Address, approved: bool) -> Self {
        self.slots.push((approved_router_slot(router), U256::from(u8::from(approved))));
        self
    }

    /// The storage slots, later entries overriding earlier ones for the same slot.
    pub fn slots(&self) -> impl Iterator<Item = (U256, U256)> + '_ {
        self.slots.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_in_the_solidity_packing() {
        let credential = Credential {
            issuer: Address::repeat_byte(0xab),
            expires_at: 0x0102_0304_0506_0708,
            revoked: true,
        };
        let word = credential.encode();
        // issuer in the low 20 bytes, then expiresAt, then the revoked byte.
        assert_eq!(word & U256::from_be_slice(&[0xff; 20]), U256::from_be_slice(&[0xab; 20]));
        assert_eq!((word >> 160) & U256::from(u64::MAX), U256::from(0x0102_0304_0506_0708u64));
        assert_eq!(word >> 224, U256::from(1));
        assert_eq!(Credential::decode(word), credential);
        assert_eq!(Credential::decode(U256::ZERO).issuer, Address::ZERO);
    }
}
