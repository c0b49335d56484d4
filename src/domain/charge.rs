//! A charge for one generation: consumed at once, or held first and then captured, released or
//! expired (C3, C5, C5b, C6).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    AccountId, BucketRef, Cause, ChargeKey, Credits, DomainError, GivenBack, Movement, Origin, OverflowTake, Split,
    Tenant, Wallet,
};

/// Where a charge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeState {
    /// A hold: its credits are out of the buckets, not yet spent.
    Held,
    /// Spent (by Consume, or a hold's Commit); refunds may return it.
    Captured,
    /// A hold returned by Release.
    Released,
    /// A hold returned by the service after its TTL.
    Expired,
}

impl ChargeState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeState::Held => "held",
            ChargeState::Captured => "captured",
            ChargeState::Released => "released",
            ChargeState::Expired => "expired",
        }
    }

    /// Parses the stored name.
    pub fn from_stored(value: &str) -> Option<ChargeState> {
        [ChargeState::Held, ChargeState::Captured, ChargeState::Released, ChargeState::Expired]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

impl fmt::Display for ChargeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChargeState::Held => "open",
            ChargeState::Captured => "committed",
            ChargeState::Released => "released",
            ChargeState::Expired => "expired",
        })
    }
}

/// One charge and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The caller's key.
    pub key: ChargeKey,
    /// The workspace, or the account in personal context.
    pub scope: Tenant,
    /// The account charged.
    pub account_id: AccountId,
    /// Where it is in its life.
    pub state: ChargeState,
    /// Held: what is held. Captured: what was spent. Released or expired: what was held.
    pub split: Split,
    /// Of a captured split, what refunds have taken back (forfeited parts included).
    pub refunded: Split,
    /// Monthly credits not returned because their cycle had renewed.
    pub forfeited: Credits,
    /// The monthly cycle the credits were drawn in.
    pub cycle: i64,
    /// When the charge was made (unix ms).
    pub created_at_ms: i64,
    /// When an open hold expires (unix ms); `None` for a one-shot consumption.
    pub expires_at_ms: Option<i64>,
    /// The overflow units the charge holds, so returns give back exactly what it took (C4, C6).
    #[serde(default, skip_serializing_if = "OverflowTake::is_none")]
    pub overflow: OverflowTake,
    /// The membership that made it ([`Member::membership`](super::Member::membership); 0 in
    /// personal context): only that membership's usage goes down when credits come back.
    #[serde(default)]
    pub membership: i64,
}

/// What a Commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Spent, by bucket.
    pub captured: Split,
    /// The uncaptured rest of the hold, given back.
    pub given_back: GivenBack,
}

impl Charge {
    /// C1–C3: a one-shot consumption of `amount` from `wallet`.
    pub fn consume(
        key: ChargeKey,
        wallet: &mut Wallet,
        amount: Credits,
        now_ms: i64,
    ) -> Result<(Charge, Vec<Movement>), DomainError> {
        let drawn = wallet.draw(amount, &BucketRef::Consumed, Cause::Consume)?;
        Ok((Charge::new(key, wallet, ChargeState::Captured, &drawn, now_ms, None), drawn.movements))
    }

    /// C5: a hold of `amount` from `wallet` until `expires_at_ms`.
    pub fn hold(
        key: ChargeKey,
        wallet: &mut Wallet,
        amount: Credits,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(Charge, Vec<Movement>), DomainError> {
        let drawn = wallet.draw(amount, &wallet.scope().held(), Cause::Hold)?;
        Ok((Charge::new(key, wallet, ChargeState::Held, &drawn, now_ms, Some(expires_at_ms)), drawn.movements))
    }

    fn new(
        key: ChargeKey,
        wallet: &Wallet,
        state: ChargeState,
        drawn: &super::Drawn,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Charge {
        let mut overflow = wallet.overflow_take();
        overflow.units = drawn.units;
        Charge {
            key,
            scope: wallet.scope(),
            account_id: wallet.account_id().clone(),
            state,
            split: drawn.split,
            refunded: Split::default(),
            forfeited: Credits::ZERO,
            cycle: wallet.monthly_cycle(),
            created_at_ms: now_ms,
            expires_at_ms,
            overflow,
            membership: wallet.membership(),
        }
    }

    /// Gives `back` of what the charge holds (`holding`) back to the wallet's buckets.
    fn give_back(
        &mut self,
        wallet: &mut Wallet,
        back: Split,
        holding: Split,
        from: &BucketRef,
        cause: Cause,
    ) -> Result<(GivenBack, Vec<Movement>), DomainError> {
        let origin = Origin { cycle: self.cycle, membership: self.membership };
        wallet.give_back(back, from, origin, &mut self.overflow, holding.overflow, cause)
    }

    fn ensure_held(&self) -> Result<(), DomainError> {
        if self.state == ChargeState::Held { Ok(()) } else { Err(DomainError::HoldNotOpen { state: self.state }) }
    }

    /// C5: captures `amount` of an open hold. Less than held gives the rest back, last-drawn
    /// bucket first; more draws the extra by the usual order, or fails and leaves the hold as it was.
    pub fn commit(&mut self, wallet: &mut Wallet, amount: Credits) -> Result<(Captured, Vec<Movement>), DomainError> {
        self.ensure_held()?;
        let held = self.split;
        let from = self.scope.held();
        let mut movements = Vec::new();
        let outcome = if amount <= held.total() {
            let rest = held.last_drawn(held.total().saturating_sub(amount));
            let captured = held.checked_sub(rest).ok_or(DomainError::BalanceOverflow)?;
            let (given_back, returned) = self.give_back(wallet, rest, held, &from, Cause::Release)?;
            movements.extend(wallet.transfer(captured, &from, &BucketRef::Consumed, Cause::Capture));
            movements.extend(returned);
            Captured { captured, given_back }
        } else {
            if self.cycle != wallet.monthly_cycle() {
                return Err(DomainError::HoldFromEarlierCycle { held: held.total() });
            }
            let extra_amount = amount.saturating_sub(held.total());
            // A charge keeps the units of one contract period: units of a closed one stay
            // counted there, so new units cannot join them.
            let of_closed_period =
                !self.overflow.units.is_zero() && self.overflow.cycle != wallet.overflow_take().cycle;
            if of_closed_period
                && Split::first_drawn(wallet.drawable(), extra_amount).is_some_and(|s| !s.overflow.is_zero())
            {
                return Err(DomainError::HoldFromEarlierCycle { held: held.total() });
            }
            let extra = wallet.draw(extra_amount, &BucketRef::Consumed, Cause::Capture)?;
            movements.extend(wallet.transfer(held, &from, &BucketRef::Consumed, Cause::Capture));
            movements.extend(extra.movements);
            if !extra.units.is_zero() {
                if self.overflow.units.is_zero() {
                    self.overflow = wallet.overflow_take();
                }
                self.overflow.units = self.overflow.units.plus(extra.units);
            }
            let captured = held.checked_add(extra.split).ok_or(DomainError::BalanceOverflow)?;
            Captured { captured, given_back: GivenBack::default() }
        };
        self.state = ChargeState::Captured;
        self.split = outcome.captured;
        self.forfeited = outcome.given_back.forfeited;
        self.expires_at_ms = None;
        Ok((outcome, movements))
    }

    /// C5, C5b: gives an open hold back; `expired` when the service does it after the TTL.
    pub fn release(&mut self, wallet: &mut Wallet, expired: bool) -> Result<(GivenBack, Vec<Movement>), DomainError> {
        self.ensure_held()?;
        let cause = if expired { Cause::Expiry } else { Cause::Release };
        let (given_back, movements) = self.give_back(wallet, self.split, self.split, &self.scope.held(), cause)?;
        self.state = if expired { ChargeState::Expired } else { ChargeState::Released };
        self.forfeited = given_back.forfeited;
        Ok((given_back, movements))
    }

    /// Credits spent and not yet refunded.
    pub fn refundable(&self) -> Credits {
        match self.state {
            ChargeState::Captured => self.split.total().saturating_sub(self.refunded.total()),
            ChargeState::Held | ChargeState::Released | ChargeState::Expired => Credits::ZERO,
        }
    }

    /// C6: returns `amount` (everything refundable when `None`) to the buckets it came from,
    /// last-drawn first; never more than was consumed.
    pub fn refund(
        &mut self,
        wallet: &mut Wallet,
        amount: Option<Credits>,
    ) -> Result<(GivenBack, Vec<Movement>), DomainError> {
        if self.state == ChargeState::Held {
            return Err(DomainError::RefundOfOpenHold);
        }
        let refundable = self.refundable();
        let requested = amount.unwrap_or(refundable);
        if requested > refundable || requested.is_zero() {
            return Err(DomainError::RefundExceedsConsumed { requested, refundable });
        }
        let remaining = self.split.checked_sub(self.refunded).ok_or(DomainError::BalanceOverflow)?;
        let back = remaining.last_drawn(requested);
        let (given_back, movements) = self.give_back(wallet, back, remaining, &BucketRef::Consumed, Cause::Refund)?;
        self.refunded = self.refunded.checked_add(back).ok_or(DomainError::BalanceOverflow)?;
        self.forfeited = self.forfeited.checked_add(given_back.forfeited).ok_or(DomainError::BalanceOverflow)?;
        Ok((given_back, movements))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PoolAccess;
    use crate::domain::{AllowanceState, Member, Role, Workspace, WorkspaceId};

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn wallet() -> Wallet {
        let id = WorkspaceId::parse("w").unwrap();
        let mut workspace = Workspace::new(id.clone(), AccountId::parse("owner").unwrap(), 0);
        workspace.monthly_pool = credits(500);
        workspace.top_up_pool = credits(100);
        let mut member = Member::new(id, AccountId::parse("m").unwrap(), Role::Editor, 0);
        member.monthly = AllowanceState { allowance: credits(150), used: Credits::ZERO };
        member.top_up = AllowanceState { allowance: credits(100), used: Credits::ZERO };
        Wallet::for_member(workspace, member, PoolAccess::Denied).unwrap()
    }

    fn key(k: &str) -> ChargeKey {
        ChargeKey::parse(k).unwrap()
    }

    #[test]
    fn committing_less_than_held_returns_the_last_drawn_bucket_first() {
        let mut wallet = wallet();
        let (mut hold, _) = Charge::hold(key("job"), &mut wallet, credits(180), 0, 60_000).unwrap();
        assert_eq!(hold.split, Split::of(credits(150), credits(30)));
        let (outcome, _) = hold.commit(&mut wallet, credits(140)).unwrap();
        assert_eq!(outcome.given_back.returned, Split::of(credits(10), credits(30)));
        assert_eq!(outcome.captured, Split::of(credits(140), Credits::ZERO));
        assert_eq!(hold.state, ChargeState::Captured);
        assert_eq!(wallet.drawable(), Split::of(credits(10), credits(100)));
    }

    #[test]
    fn committing_more_than_held_draws_the_extra_or_leaves_the_hold() {
        let mut wallet = wallet();
        let (mut hold, _) = Charge::hold(key("job"), &mut wallet, credits(100), 0, 60_000).unwrap();
        let (before_hold, before_wallet) = (hold.clone(), wallet.clone());
        assert!(matches!(hold.commit(&mut wallet, credits(251)), Err(DomainError::InsufficientCredits { .. })));
        assert_eq!((&hold, &wallet), (&before_hold, &before_wallet));
        let (outcome, _) = hold.commit(&mut wallet, credits(250)).unwrap();
        assert_eq!(outcome.captured, Split::of(credits(150), credits(100)));
    }

    #[test]
    fn refunds_go_back_last_drawn_first_and_never_exceed_what_was_consumed() {
        let mut wallet = wallet();
        let (mut charge, _) = Charge::consume(key("gen"), &mut wallet, credits(180), 0).unwrap();
        let (first, _) = charge.refund(&mut wallet, Some(credits(40))).unwrap();
        assert_eq!(first.returned, Split::of(credits(10), credits(30)));
        assert_eq!(
            charge.refund(&mut wallet, Some(credits(141))),
            Err(DomainError::RefundExceedsConsumed { requested: credits(141), refundable: credits(140) })
        );
        let (rest, _) = charge.refund(&mut wallet, None).unwrap();
        assert_eq!(rest.returned, Split::of(credits(140), Credits::ZERO));
        assert_eq!(charge.refundable(), Credits::ZERO);
        assert_eq!(wallet.drawable(), Split::of(credits(150), credits(100)));
    }

    #[test]
    fn a_hold_can_be_closed_only_once() {
        let mut wallet = wallet();
        let (mut hold, _) = Charge::hold(key("job"), &mut wallet, credits(10), 0, 60_000).unwrap();
        hold.release(&mut wallet, false).unwrap();
        assert_eq!(
            hold.commit(&mut wallet, credits(10)),
            Err(DomainError::HoldNotOpen { state: ChargeState::Released })
        );
        assert_eq!(hold.release(&mut wallet, true), Err(DomainError::HoldNotOpen { state: ChargeState::Released }));
    }
}
