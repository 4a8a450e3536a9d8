//! Helpers shared by the fuzz targets: cutting one fuzz input into the several inputs a parser
//! takes (a status, a selector, header values, a body), deterministically, so a crash input
//! replays exactly.

/// A fuzz input being taken apart from the front.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// Wraps the fuzzer's bytes.
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    /// The next byte, 0 once empty.
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to the next NUL byte (consumed), or everything left.
    pub fn field(&mut self) -> &'a [u8] {
        match self.0.iter().position(|&b| b == 0) {
            Some(i) => {
                let (head, rest) = self.0.split_at(i);
                self.0 = &rest[1..];
                head
            }
            None => std::mem::take(&mut self.0),
        }
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// An HTTP status from two bytes: 200 half the time (the path with the most to parse),
/// otherwise any code `http` accepts (100..=999).
pub fn status(input: &mut Input<'_>) -> u16 {
    let raw = input.u16();
    if raw & 1 == 0 {
        200
    } else {
        100 + (raw >> 1) % 900
    }
}
