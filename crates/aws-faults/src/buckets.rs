//! EC2's request token buckets: one bucket per API action, sized and refilled by the
//! action's category. A call takes a token; with none left, EC2 answers
//! `RequestLimitExceeded`.
//!
//! Sizes and refill rates: "Request throttling for the Amazon EC2 API", section
//! "Request token bucket sizes and refill rates", in the Amazon EC2 Developer Guide
//! (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html).

use std::time::Duration;

/// An action's category, with its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `RunInstances`, which has a small bucket of its own.
    RunInstances,
    /// Actions that change something.
    Mutating,
    /// `Describe*` and other reads.
    NonMutating,
}

impl Category {
    /// The category of an EC2 action.
    pub fn of(action: &str) -> Self {
        if action == "RunInstances" {
            Category::RunInstances
        } else if ["Describe", "Get", "List"]
            .iter()
            .any(|p| action.starts_with(p))
        {
            Category::NonMutating
        } else {
            Category::Mutating
        }
    }

    /// (bucket size in tokens, refill rate in tokens per second), as published.
    pub fn limits(self) -> (f64, f64) {
        match self {
            Category::RunInstances => (5.0, 2.0),
            Category::Mutating => (50.0, 5.0),
            Category::NonMutating => (100.0, 20.0),
        }
    }
}

/// One action's bucket. Time is passed in, so a test can drive it with a known rate.
#[derive(Debug, Clone)]
pub struct Bucket {
    size: f64,
    refill: f64,
    tokens: f64,
    /// When it was last refilled, from an origin the caller chooses.
    at: Duration,
}

impl Bucket {
    /// A full bucket of `category`, as of `now`.
    pub fn new(category: Category, now: Duration) -> Self {
        let (size, refill) = category.limits();
        Self {
            size,
            refill,
            tokens: size,
            at: now,
        }
    }

    /// Takes a token at `now`; `false` means the call is throttled.
    pub fn take(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill).min(self.size);
        self.at = now.max(self.at);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls at `rate` per second for `seconds`; how many get through.
    fn admitted(category: Category, rate: u32, seconds: u32) -> u32 {
        let mut bucket = Bucket::new(category, Duration::ZERO);
        let step = Duration::from_secs(1) / rate;
        (0..rate * seconds)
            .filter(|i| bucket.take(step * *i))
            .count()
            .try_into()
            .expect("small")
    }

    #[test]
    fn a_steady_rate_gets_the_bucket_then_the_refill_rate() {
        // Mutating: 50 tokens, 5 a second. At 10 calls a second for 20 s, the bucket
        // empties and then admits 5 a second: 50 + 5 × 20, give or take the last one.
        let n = admitted(Category::Mutating, 10, 20);
        assert!((149..=151).contains(&n), "{n}");
        // Below the refill rate nothing is throttled.
        assert_eq!(admitted(Category::Mutating, 5, 20), 100);
        // Describe*: 100 tokens, 20 a second.
        let n = admitted(Category::NonMutating, 50, 10);
        assert!((299..=301).contains(&n), "{n}");
        // RunInstances: 5 tokens, 2 a second.
        let n = admitted(Category::RunInstances, 10, 10);
        assert!((24..=26).contains(&n), "{n}");
    }

    #[test]
    fn an_idle_bucket_fills_up_to_its_size_and_no_further() {
        let mut b = Bucket::new(Category::RunInstances, Duration::ZERO);
        for _ in 0..5 {
            assert!(b.take(Duration::ZERO));
        }
        assert!(!b.take(Duration::ZERO), "empty");
        // A minute idle refills it to 5, not 120.
        let later = Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 5);
    }

    #[test]
    fn categories_follow_the_action() {
        assert_eq!(Category::of("RunInstances"), Category::RunInstances);
        assert_eq!(Category::of("DescribeInstances"), Category::NonMutating);
        assert_eq!(Category::of("CreateVpc"), Category::Mutating);
    }
}
