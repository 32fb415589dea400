//! Proleptic Gregorian calendar arithmetic: Howard Hinnant's
//! `days_from_civil` and `civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html>), exact for any
//! date, with no tables and no loops.

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = i64::from((153 * month_from_march + 2) / 5 + day - 1);
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Hinnant).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks every day from 0000-03-01 to 9999-12-31 with a naive calendar
    /// and checks both conversions agree with it, so the arithmetic is
    /// verified exhaustively rather than on a few chosen dates.
    #[test]
    fn civil_conversions_match_a_naive_calendar_for_every_day() {
        let (mut year, mut month, mut day) = (0u32, 3u32, 1u32);
        let mut days = days_from_civil(0, 3, 1);
        loop {
            assert_eq!(days_from_civil(year.into(), month, day), days, "{year}-{month}-{day}");
            assert_eq!(civil_from_days(days), (year.into(), month, day), "day {days}");
            if (year, month, day) == (9999, 12, 31) {
                break;
            }
            day += 1;
            if day > days_in_month(year, month) {
                (day, month) = (1, month + 1);
            }
            if month > 12 {
                (month, year) = (1, year + 1);
            }
            days += 1;
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }
}
