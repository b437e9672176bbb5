//! Payment card validation: the Luhn checksum and the issuer (IIN) ranges with the lengths
//! each scheme issues. Leaves out finding candidates in text (see `numbers`).

/// Luhn (mod 10) check over decimal digit values (0..=9).
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (index, &digit) in digits.iter().rev().enumerate() {
        let mut value = u32::from(digit);
        if index % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    sum.is_multiple_of(10)
}

/// The leading `count` digits as a number.
fn prefix(digits: &[u8], count: usize) -> u32 {
    digits
        .iter()
        .take(count)
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether the digits start with an issuer range that issues numbers of this length.
pub(crate) fn issuer_known(digits: &[u8]) -> bool {
    let len = digits.len();
    if !(12..=19).contains(&len) {
        return false;
    }
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    let p6 = prefix(digits, 6);
    // Visa.
    if p1 == 4 {
        return matches!(len, 13 | 16 | 19);
    }
    // American Express.
    if p2 == 34 || p2 == 37 {
        return len == 15;
    }
    // Mastercard (51-55 and the 2-series), Mir (2200-2204).
    if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) || (2200..=2204).contains(&p4) {
        return len == 16;
    }
    // Discover (6011, 644-649, 65, and the 622126-622925 co-brand range).
    if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6) {
        return (16..=19).contains(&len);
    }
    // UnionPay.
    if p2 == 62 {
        return (16..=19).contains(&len);
    }
    // JCB.
    if (3528..=3589).contains(&p4) {
        return (16..=19).contains(&len);
    }
    // Diners Club.
    if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 {
        return (14..=19).contains(&len);
    }
    // Maestro.
    if matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763) {
        return (12..=19).contains(&len);
    }
    false
}

/// A payment card number: an issuer range with its length, and a valid Luhn checksum.
pub(crate) fn is_card(digits: &[u8]) -> bool {
    digits.len() >= 13 && issuer_known(digits) && luhn_valid(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect()
    }

    #[test]
    fn known_test_numbers_are_cards() {
        for number in [
            "4111111111111111",
            "4012888888881881",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
        ] {
            assert!(is_card(&digits(number)), "{number}");
        }
    }

    #[test]
    fn luhn_failures_and_unknown_issuers_are_not_cards() {
        assert!(!is_card(&digits("4111111111111112")));
        // Valid Luhn, but no issuer starts with 1 or 9.
        assert!(!is_card(&digits("1234567812345670")));
        assert!(!is_card(&digits("9111111111111111")));
        // Visa does not issue 15 digits.
        assert!(!is_card(&digits("411111111111116")));
        assert!(!is_card(&[]));
    }

    proptest! {
        #[test]
        fn changing_one_digit_breaks_luhn(body in proptest::collection::vec(0u8..10, 15), position in 0usize..16, delta in 1u8..10) {
            let mut number = body;
            number.push(0);
            let check = (0..10).find(|&c| { number[15] = c; luhn_valid(&number) }).unwrap();
            number[15] = check;
            prop_assert!(luhn_valid(&number));
            number[position] = (number[position] + delta) % 10;
            prop_assert!(!luhn_valid(&number));
        }
    }
}
