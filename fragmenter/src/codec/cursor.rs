//! A checked big-endian reader over byte-aligned records (avcC, hvcC, ADTS,
//! OpusHead). Every read names its field so a short record reports which
//! field it ended in and at which byte.

use super::CodecError;

pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let rest = &self.data[self.pos..];
        let Some(out) = rest.get(..n) else {
            return Err(CodecError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                had: rest.len(),
            });
        };
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_read_names_field_and_offset() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16("a").unwrap(), 0x0102);
        assert_eq!(
            c.u16("b"),
            Err(CodecError::Truncated {
                what: "b",
                offset: 2,
                needed: 2,
                had: 1
            })
        );
        // A failed read consumes nothing.
        assert_eq!(c.u8("c").unwrap(), 3);
        assert_eq!(c.remaining(), 0);
    }
}
