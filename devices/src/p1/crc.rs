//! CRC-16/ARC as DSMR 4/5 use it: polynomial 0x8005 reflected (0xA001), initial value 0, no
//! final XOR, over every byte from the `/` of the header through the `!` of the trailer.

/// CRC-16/ARC of `bytes`.
#[must_use]
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::crc16_arc;

    #[test]
    fn check_value_of_the_catalogue() {
        // The CRC catalogue's check value for CRC-16/ARC over "123456789".
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(b""), 0);
    }
}
