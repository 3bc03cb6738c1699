//! A rate: `N/second`, `N/minute` or `N/hour`, as flags and API keys give it.

use std::num::NonZeroU32;
use std::time::Duration;

/// `N/second`, `N/minute` or `N/hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    /// `off` is `None`.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, RateError> {
        if raw.trim().eq_ignore_ascii_case("off") {
            Ok(None)
        } else {
            Self::parse(raw).map(Some)
        }
    }

    pub fn parse(raw: &str) -> Result<Self, RateError> {
        let (count, unit) = raw
            .split_once('/')
            .ok_or_else(|| RateError::Shape(raw.to_owned()))?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| RateError::Count(raw.to_owned()))?;
        let period = match unit.trim() {
            "second" | "s" => Duration::from_secs(1),
            "minute" | "m" => Duration::from_secs(60),
            "hour" | "h" => Duration::from_secs(3600),
            _ => return Err(RateError::Unit(raw.to_owned())),
        };
        Ok(Self { count, period })
    }

    /// `N/second|minute|hour`, as stored and shown.
    pub fn canonical(self) -> String {
        let unit = match self.period.as_secs() {
            1 => "second",
            60 => "minute",
            _ => "hour",
        };
        format!("{}/{unit}", self.count)
    }

    /// Whether this allows no more requests over time than `max`.
    pub fn at_most(self, max: Rate) -> bool {
        let mine = u128::from(self.count.get()) * max.period.as_millis();
        let theirs = u128::from(max.count.get()) * self.period.as_millis();
        mine <= theirs
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("{0:?} is not N/second, N/minute or N/hour")]
    Shape(String),
    #[error("{0:?}: the count must be a whole number above 0")]
    Count(String),
    #[error("{0:?}: the unit must be second, minute or hour")]
    Unit(String),
    #[error("rate {0:?} is too fine")]
    TooFine(Rate),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_compare_over_time_and_print_as_they_are_written() {
        let per_minute = Rate::parse("600/minute").unwrap();
        assert_eq!(per_minute.canonical(), "600/minute");
        assert_eq!(Rate::parse("10/s").unwrap().canonical(), "10/second");
        assert!(Rate::parse("10/second").unwrap().at_most(per_minute));
        assert!(per_minute.at_most(Rate::parse("10/second").unwrap()));
        assert!(!Rate::parse("11/second").unwrap().at_most(per_minute));
        assert!(Rate::parse("36000/hour").unwrap().at_most(per_minute));
        assert!(!Rate::parse("36001/hour").unwrap().at_most(per_minute));
    }
}
