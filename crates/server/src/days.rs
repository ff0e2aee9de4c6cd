//! Quota days as the backend API reads and writes them: `YYYY-MM-DD` keys (what
//! [`day_key`](crate::config::day_key) makes and the store counts under), parsed strictly and
//! counted in days since 1970-01-01.

use crate::config::civil_from_days;

/// One calendar day, 1970-01-01 to 9999-12-31 (keys of four-digit years sort as dates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(i64);

/// 9999-12-31.
const LAST: i64 = 2_932_896;

impl Day {
    /// 1970-01-01, the first day there is.
    pub const FIRST: Day = Day(0);

    /// Parses `YYYY-MM-DD`, refusing anything else: other shapes, month 13, February 30th.
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<i64> {
            b[r].iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        };
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return None;
        }
        let day = Day(days_from_civil(y, m, d));
        (0..=LAST).contains(&day.0).then_some(day)
    }

    /// The day `n` days later (or earlier), if it is still in range.
    pub fn plus(self, n: i64) -> Option<Day> {
        let d = self.0.checked_add(n)?;
        (0..=LAST).contains(&d).then_some(Day(d))
    }

    /// Days from `self` to `later` (negative if `later` is before).
    pub fn until(self, later: Day) -> i64 {
        later.0 - self.0
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm, the
/// inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::day_key;

    #[test]
    fn parses_and_prints_the_keys_day_key_makes() {
        for unix in [
            0u64,
            951_782_400,
            1_709_249_400,
            1_764_633_600,
            4_102_444_800,
        ] {
            let key = day_key(unix, 0);
            let day = Day::parse(&key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(day.to_string(), key);
            assert_eq!(day.0, unix as i64 / 86_400);
        }
        assert_eq!(Day::parse("9999-12-31").map(|d| d.0), Some(LAST));
        assert_eq!(
            Day::parse("2024-02-28")
                .and_then(|d| d.plus(1))
                .map(|d| d.to_string()),
            Some("2024-02-29".into())
        );
        assert_eq!(
            Day::parse("2023-12-31")
                .and_then(|d| d.plus(1))
                .map(|d| d.to_string()),
            Some("2024-01-01".into())
        );
    }

    #[test]
    fn refuses_what_is_not_a_day() {
        for bad in [
            "",
            "2024-2-29",
            "2024-02-30",
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "2024/01/01",
            "20240101",
            "1969-12-31",
            "+024-01-01",
            "2024-01-01 ",
            "２０２４-01-01",
            "abcd-ef-gh",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Day::parse("2000-02-29").map(|d| d.to_string()),
            Some("2000-02-29".into())
        );
        assert_eq!(Day::parse("9999-12-31").and_then(|d| d.plus(1)), None);
        assert_eq!(Day::parse("1970-01-01").and_then(|d| d.plus(-1)), None);
    }
}
