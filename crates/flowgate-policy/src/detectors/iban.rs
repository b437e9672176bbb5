//! IBAN validation: the per-country length table (SWIFT IBAN registry) and the ISO 7064
//! mod-97-10 checksum. Leaves out finding candidates in text (see `numbers`).

/// IBAN length by ISO 3166 country code, for every country in the registry.
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// The IBAN length for a country code, if the country issues IBANs.
pub(crate) fn country_length(country: [u8; 2]) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|&(_, len)| len)
}

/// The longest IBAN of any country.
pub(crate) const MAX_LENGTH: usize = 34;

/// Mod-97 over the compact IBAN (upper-case letters and digits, no spaces), with the first four
/// characters moved to the end and letters expanded to 10..=35.
pub(crate) fn mod97(compact: &[u8]) -> Option<u32> {
    if compact.len() < 5 {
        return None;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &c in tail.iter().chain(head) {
        match c {
            b'0'..=b'9' => remainder = (remainder * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => remainder = (remainder * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return None,
        }
    }
    Some(remainder)
}

/// Whether a compact IBAN has its country's length and a valid checksum.
pub(crate) fn is_iban(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let country = [compact[0], compact[1]];
    if !country.iter().all(u8::is_ascii_uppercase)
        || !compact[2].is_ascii_digit()
        || !compact[3].is_ascii_digit()
    {
        return false;
    }
    country_length(country) == Some(compact.len()) && mod97(compact) == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn registry_examples_validate() {
        for iban in [
            "DE89370400440532013000",
            "GB29NWBK60161331926819",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "NO9386011117947",
            "CH9300762011623852957",
        ] {
            assert!(is_iban(iban.as_bytes()), "{iban}");
        }
    }

    #[test]
    fn wrong_check_digits_or_length_fail() {
        assert!(!is_iban(b"DE89370400440532013001"));
        assert!(!is_iban(b"DE8937040044053201300"));
        assert!(!is_iban(b"XX89370400440532013000"));
        assert!(!is_iban(b"de89370400440532013000"));
        assert!(!is_iban(b"DE"));
    }

    #[test]
    fn table_lengths_are_sane() {
        for (_, len) in LENGTHS {
            assert!((15..=MAX_LENGTH).contains(len));
        }
    }

    proptest! {
        #[test]
        fn single_digit_substitution_is_caught(body in "[0-9]{18}", position in 4usize..22, delta in 1u8..10) {
            // Build a valid German IBAN from a random BBAN, then damage one digit.
            let mut compact = format!("DE00{body}").into_bytes();
            let check = 98 - mod97(&compact).unwrap();
            compact[2] = b'0' + (check / 10) as u8;
            compact[3] = b'0' + (check % 10) as u8;
            prop_assert!(is_iban(&compact));
            compact[position] = b'0' + (compact[position] - b'0' + delta) % 10;
            prop_assert!(!is_iban(&compact));
        }
    }
}
