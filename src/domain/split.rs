//! The draw chain (C1, C5, C6): the buckets a charge draws from, in order, and how an amount
//! falls over them. Drawing fills the chain front to back; giving back empties it back to front.

use serde::{Deserialize, Serialize};

use super::Credits;

/// One link of the draw chain.
///
/// In a workspace: the monthly pool (through the member's monthly allowance), the top-up pool
/// (through the top-up allowance), then the enterprise overflow pool. In personal context: the
/// account's monthly credits, then its top-up credits; personal context has no overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DrawBucket {
    /// Monthly credits (they expire at a renewal).
    Monthly,
    /// Top-up credits (they never expire).
    TopUp,
    /// The workspace's enterprise overflow pool, drawn in units at a ratio (C4).
    Overflow,
}

impl DrawBucket {
    /// The chain in draw order.
    pub const ORDER: [DrawBucket; 3] = [DrawBucket::Monthly, DrawBucket::TopUp, DrawBucket::Overflow];

    /// The stored name (journal `part`).
    pub fn as_str(self) -> &'static str {
        match self {
            DrawBucket::Monthly => "monthly",
            DrawBucket::TopUp => "top_up",
            DrawBucket::Overflow => "overflow",
        }
    }

    /// Parses the stored name.
    pub fn from_stored(value: &str) -> Option<DrawBucket> {
        DrawBucket::ORDER.into_iter().find(|bucket| bucket.as_str() == value)
    }
}

/// How an amount falls over the draw chain.
///
/// Serialized into idempotency records and notification payloads: `overflow` is left out when
/// zero, so records written before the overflow pool existed still read and replay unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// From the monthly bucket.
    pub monthly: Credits,
    /// From the top-up bucket.
    pub top_up: Credits,
    /// From the overflow pool.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overflow: Credits,
}

fn is_zero(credits: &Credits) -> bool {
    credits.is_zero()
}

impl Split {
    /// A split over the monthly and top-up buckets only.
    pub fn of(monthly: Credits, top_up: Credits) -> Split {
        Split { monthly, top_up, overflow: Credits::ZERO }
    }

    /// `credits` on `bucket` alone.
    pub fn only(bucket: DrawBucket, credits: Credits) -> Split {
        let mut split = Split::default();
        *split.part_mut(bucket) = credits;
        split
    }

    /// The part on `bucket`.
    pub fn get(self, bucket: DrawBucket) -> Credits {
        match bucket {
            DrawBucket::Monthly => self.monthly,
            DrawBucket::TopUp => self.top_up,
            DrawBucket::Overflow => self.overflow,
        }
    }

    fn part_mut(&mut self, bucket: DrawBucket) -> &mut Credits {
        match bucket {
            DrawBucket::Monthly => &mut self.monthly,
            DrawBucket::TopUp => &mut self.top_up,
            DrawBucket::Overflow => &mut self.overflow,
        }
    }

    /// The parts in draw order, zero parts included.
    pub fn parts(self) -> impl DoubleEndedIterator<Item = (DrawBucket, Credits)> {
        DrawBucket::ORDER.into_iter().map(move |bucket| (bucket, self.get(bucket)))
    }

    /// All parts together (saturating; amounts are bounded far below `i64::MAX`).
    pub fn total(self) -> Credits {
        self.parts()
            .try_fold(Credits::ZERO, |sum, (_, part)| sum.checked_add(part))
            .unwrap_or(Credits::new(i64::MAX).unwrap_or_default())
    }

    /// Part by part sum; `None` on overflow.
    pub fn checked_add(self, other: Split) -> Option<Split> {
        self.zip(other, Credits::checked_add)
    }

    /// Part by part difference; `None` if a part would go negative.
    pub fn checked_sub(self, other: Split) -> Option<Split> {
        self.zip(other, Credits::checked_sub)
    }

    fn zip(self, other: Split, op: impl Fn(Credits, Credits) -> Option<Credits>) -> Option<Split> {
        let mut result = Split::default();
        for bucket in DrawBucket::ORDER {
            *result.part_mut(bucket) = op(self.get(bucket), other.get(bucket))?;
        }
        Some(result)
    }

    /// C1, C2: `amount` taken from `available` front to back (monthly, top-up, overflow); `None`
    /// when the chain cannot cover it all (nothing partial).
    pub fn first_drawn(available: Split, amount: Credits) -> Option<Split> {
        let mut left = amount;
        let mut split = Split::default();
        for (bucket, part) in available.parts() {
            let take = left.min(part);
            *split.part_mut(bucket) = take;
            left = left.saturating_sub(take);
        }
        left.is_zero().then_some(split)
    }

    /// C5, C6: the last-drawn `amount` of this split, taken back to front (overflow, top-up,
    /// monthly). `amount` is capped at the total.
    pub fn last_drawn(self, amount: Credits) -> Split {
        let mut left = amount;
        let mut split = Split::default();
        for (bucket, part) in self.parts().rev() {
            let take = left.min(part);
            *split.part_mut(bucket) = take;
            left = left.saturating_sub(take);
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn split(monthly: i64, top_up: i64, overflow: i64) -> Split {
        Split { monthly: credits(monthly), top_up: credits(top_up), overflow: credits(overflow) }
    }

    #[test]
    fn c1_draws_fill_the_chain_front_to_back_and_refuse_what_it_cannot_cover() {
        assert_eq!(Split::first_drawn(split(10, 5, 100), credits(25)), Some(split(10, 5, 10)));
        assert_eq!(Split::first_drawn(split(10, 5, 0), credits(15)), Some(split(10, 5, 0)));
        assert_eq!(Split::first_drawn(split(10, 5, 0), credits(16)), None);
    }

    #[test]
    fn c6_giving_back_empties_the_chain_back_to_front() {
        let drawn = split(150, 30, 20);
        assert_eq!(drawn.last_drawn(credits(15)), split(0, 0, 15));
        assert_eq!(drawn.last_drawn(credits(40)), split(0, 20, 20));
        assert_eq!(drawn.last_drawn(credits(70)), split(20, 30, 20));
        assert_eq!(drawn.last_drawn(credits(999)), drawn);
    }

    #[test]
    fn a_split_stored_before_the_overflow_pool_reads_and_writes_unchanged() {
        let old = r#"{"monthly":7,"top_up":3}"#;
        let read: Split = serde_json::from_str(old).unwrap();
        assert_eq!(read, split(7, 3, 0));
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }
}
