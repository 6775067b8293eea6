//! [`RegistryHook`]: the engine's compliance hook over a `CredentialRegistry` contract.

use alloy_primitives::{Address, U256};
use parevm::{
    CallerChain, ComplianceHook, GatedCall, ReadError, Rejection, RejectionReason, StateView,
};

use crate::layout::{
    approved_router_slot, credential_slot, issuer_flags, issuer_slot, pool_options_slot,
    pool_policy_slot, Credential, CALLER_CHAIN,
};

/// Checks transactions addressing or changing gated pools against the `CredentialRegistry`
/// deployed at `registry`.
///
/// A transaction may address or change `pool` if `poolPolicy[pool]` is zero; otherwise, for
/// every required claim in increasing order, the sender's credential must exist (else
/// [`RejectionReason::Missing`]), not be revoked (`Revoked`), expire strictly after the
/// block timestamp (`Expired`), and its issuer must be active (`IssuerInactive`), allowed
/// for that claim now (`IssuerNotAllowed`) and, if it is the credential's own subject,
/// allowed to attest itself now (`SelfAttested`). The first failure is the rejection.
///
/// With the pool's [`CALLER_CHAIN`] option, every contract between the sender and a change
/// of the pool must be an approved router or hold the required claims by the same rule;
/// otherwise the rejection is [`RejectionReason::UnapprovedCaller`] naming the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryHook {
    registry: Address,
}

impl RegistryHook {
    /// A hook over the registry at `registry`.
    pub fn new(registry: Address) -> Self {
        Self { registry }
    }

    /// The registry's address.
    pub fn registry(&self) -> Address {
        self.registry
    }

    /// Why `subject`'s credential for `claim` does not hold at `timestamp`, if it does not.
    fn credential_problem(
        &self,
        state: &mut dyn StateView,
        subject: Address,
        claim: u8,
        timestamp: u64,
    ) -> Result<Option<RejectionReason>, ReadError> {
        let credential =
            Credential::decode(state.storage(self.registry, credential_slot(subject, claim))?);
        if credential.issuer == Address::ZERO {
            return Ok(Some(RejectionReason::Missing));
        }
        if credential.revoked {
            return Ok(Some(RejectionReason::Revoked));
        }
        if credential.expires_at <= timestamp {
            return Ok(Some(RejectionReason::Expired));
        }
        let base = issuer_slot(credential.issuer);
        let (active, self_attest) =
            issuer_flags(state.storage(self.registry, base + U256::from(1))?);
        if !active {
            return Ok(Some(RejectionReason::IssuerInactive));
        }
        let allowed = state.storage(self.registry, base)?;
        if !allowed.bit(usize::from(claim)) {
            return Ok(Some(RejectionReason::IssuerNotAllowed));
        }
        if credential.issuer == subject && !self_attest {
            return Ok(Some(RejectionReason::SelfAttested));
        }
        Ok(None)
    }

    /// `None` if `call.pool` is not gated; otherwise the claims it requires and the
    /// rejection of the sender's credentials, if they do not satisfy them.
    fn sender_check(
        &self,
        call: &GatedCall,
        state: &mut dyn StateView,
    ) -> Result<Option<(U256, Option<Rejection>)>, ReadError> {
        let required = state.storage(self.registry, cached_policy_slot(call.pool))?;
        if required.is_zero() {
            return Ok(None);
        }
        let problem = self.claims_problem(state, required, call.origin, call.timestamp)?;
        let rejection =
            problem.map(|(claim, reason)| Rejection::of_sender(call.pool, claim, reason));
        Ok(Some((required, rejection)))
    }

    /// The first claim of `required` that `subject`'s credentials do not satisfy, and why.
    fn claims_problem(
        &self,
        state: &mut dyn StateView,
        required: U256,
        subject: Address,
        timestamp: u64,
    ) -> Result<Option<(u8, RejectionReason)>, ReadError> {
        for claim in 0..=u8::MAX {
            if !required.bit(usize::from(claim)) {
                continue;
            }
            if let Some(reason) = self.credential_problem(state, subject, claim, timestamp)? {
                return Ok(Some((claim, reason)));
            }
        }
        Ok(None)
    }
}

/// Entries [`cached_policy_slot`] keeps per thread in each of its two generations.
const POLICY_SLOT_CACHE: usize = 1 << 14;

/// `pool_policy_slot` of recently checked addresses, in two generations: the hook runs on
/// every changed account, and the slot is a keccak of the address. When the young
/// generation is full it becomes the old one, so the accounts a chain's blocks keep
/// touching (tokens, popular pools) stay cached across blocks. A pure function's results,
/// so sharing them across hooks and blocks is safe. About 2 MiB per thread at most.
#[derive(Default)]
struct PolicySlots {
    young: alloy_primitives::map::AddressMap<U256>,
    old: alloy_primitives::map::AddressMap<U256>,
}

thread_local! {
    static POLICY_SLOTS: std::cell::RefCell<PolicySlots> = Default::default();
}

/// [`pool_policy_slot`], memoised per thread.
fn cached_policy_slot(pool: Address) -> U256 {
    POLICY_SLOTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(slot) = cache.young.get(&pool) {
            return *slot;
        }
        let slot = cache.old.get(&pool).copied().unwrap_or_else(|| pool_policy_slot(pool));
        if cache.young.len() >= POLICY_SLOT_CACHE {
            let young = std::mem::take(&mut cache.young);
            cache.old = young;
        }
        cache.young.insert(pool, slot);
        slot
    })
}

impl ComplianceHook for RegistryHook {
    fn check(
        &self,
        call: &GatedCall,
        state: &mut dyn StateView,
    ) -> Result<Option<Rejection>, ReadError> {
        Ok(self.sender_check(call, state)?.and_then(|(_, rejection)| rejection))
    }

    fn check_change(
        &self,
        call: &GatedCall,
        callers: &CallerChain<'_>,
        state: &mut dyn StateView,
    ) -> Result<Option<Rejection>, ReadError> {
        let required = match self.sender_check(call, state)? {
            None => return Ok(None),
            Some((_, Some(rejection))) => return Ok(Some(rejection)),
            Some((required, None)) => required,
        };
        let options = state.storage(self.registry, pool_options_slot(call.pool))?;
        if !options.bit(CALLER_CHAIN.trailing_zeros() as usize) {
            return Ok(None);
        }
        for caller in callers.contracts() {
            let approved = state.storage(self.registry, approved_router_slot(caller))?;
            if approved & U256::from(0xff) != U256::ZERO {
                continue;
            }
            if let Some((claim, _)) =
                self.claims_problem(state, required, caller, call.timestamp)?
            {
                let reason = RejectionReason::UnapprovedCaller;
                return Ok(Some(Rejection {
                    pool: call.pool,
                    claim,
                    reason,
                    caller: Some(caller),
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_slot_is_the_slot() {
        for i in 0..(2 * POLICY_SLOT_CACHE as u64 + 10) {
            let mut bytes = [0u8; 20];
            bytes[12..].copy_from_slice(&i.to_be_bytes());
            let pool = Address::from(bytes);
            assert_eq!(cached_policy_slot(pool), pool_policy_slot(pool));
            assert_eq!(cached_policy_slot(pool), pool_policy_slot(pool));
        }
    }
}
