//! PNG encoding of an RGB8 picture, written for what attnmap draws.
//!
//! A heatmap cell is several pixel rows tall and most of a picture around it is
//! flat background, so most of every row equals the row above it. Rows are Paeth
//! filtered, and a stretch that equals the row above filters to zeros without
//! being worked out or scanned again: the deflate stream below is told "n zeros"
//! and codes them as one run (a zero, then copies of it at distance 1), which
//! fdeflate, the png crate's fast mode, finds by scanning every byte. Everything
//! else is coded with fdeflate's own Huffman code for filtered rows (see the end of
//! this file). On a SmolLM2 dump's 270 pictures this encodes in well under half the
//! time of the png crate's fast mode with adaptive filtering, in files 1.5% larger.

use super::RenderError;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
/// The filter type byte that starts every Paeth-filtered row.
const PAETH: u8 = 4;
/// Compressed data per IDAT chunk: a chunk's length must stay below 2^31.
const IDAT_BYTES: usize = 1 << 20;

/// `pixels` (row-major RGB8, `width` x `height`) as a PNG file.
pub(super) fn encode_rgb8(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, RenderError> {
    let stride = width as usize * 3;
    if width == 0 || height == 0 || pixels.len() != stride * height as usize {
        return Err(RenderError::ShapeMismatch {
            shape: format!("[{height} rows, {width} RGB pixels]"),
            expected: stride * height as usize,
            got: pixels.len(),
        });
    }
    let mut deflate = Deflate::new();
    let zeros = vec![0u8; stride];
    let mut line = vec![0u8; stride];
    let mut above: &[u8] = &zeros;
    for row in pixels.chunks_exact(stride) {
        deflate.bytes(&[PAETH]);
        if row == above {
            deflate.zeros(stride);
        } else {
            paeth(row, above, &mut line, &mut deflate);
        }
        above = row;
    }
    let compressed = deflate.finish();

    let mut out = Vec::with_capacity(compressed.len() + 64);
    out.extend_from_slice(&SIGNATURE);
    let mut header = [0u8; 13];
    header[..4].copy_from_slice(&width.to_be_bytes());
    header[4..8].copy_from_slice(&height.to_be_bytes());
    // 8 bits per channel, truecolour (RGB), deflate, adaptive filtering, no interlace.
    header[8..].copy_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    for piece in compressed.chunks(IDAT_BYTES) {
        chunk(&mut out, b"IDAT", piece);
    }
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// One chunk: length, type, data, and the CRC of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The Paeth filter of one RGB8 row given the row above (zeros for the first row),
/// handed to `deflate`; `out` is scratch of the row's length.
///
/// Wherever a stretch of the row and the pixel before it equal the row above, the
/// prediction is exact and the filtered bytes are zeros (x = b and a = c: p = b, and
/// either b = c, so a is chosen and a = b, or |p - b| = 0 wins): most of a heatmap
/// (a cell's rows, flat background) is such stretches, so they are found with a
/// comparison and filled rather than worked out.
fn paeth(row: &[u8], above: &[u8], out: &mut [u8], deflate: &mut Deflate) {
    // The first pixel has no left neighbour: its predictor is the pixel above.
    for ((o, &x), &b) in out[..3].iter_mut().zip(&row[..3]).zip(&above[..3]) {
        *o = x.wrapping_sub(b);
    }
    deflate.bytes(&out[..3]);
    let mut start = 3;
    while start < row.len() {
        let end = (start + STRETCH).min(row.len());
        if row[start - 3..end] == above[start - 3..end] {
            deflate.zeros(end - start);
        } else {
            paeth_range(row, above, out, start, end);
            deflate.bytes(&out[start..end]);
        }
        start = end;
    }
}

/// Bytes compared at a time for [`paeth`]'s exact stretches: 32 pixels.
const STRETCH: usize = 96;

/// Paeth over bytes `start..end` (start >= 3), over whole slices without a carried
/// state, so the compiler vectorises it.
fn paeth_range(row: &[u8], above: &[u8], out: &mut [u8], start: usize, end: usize) {
    let (x, a) = (&row[start..end], &row[start - 3..end - 3]);
    let (b, c) = (&above[start..end], &above[start - 3..end - 3]);
    for ((((o, &x), &a), &b), &c) in out[start..end].iter_mut().zip(x).zip(a).zip(b).zip(c) {
        let (a16, b16, c16) = (i16::from(a), i16::from(b), i16::from(c));
        // p = a + b - c; the neighbour nearest to p predicts x (ties: a, then b).
        let pa = (b16 - c16).abs();
        let pb = (a16 - c16).abs();
        let pc = (a16 + b16 - 2 * c16).abs();
        let predicted = if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        };
        *o = x.wrapping_sub(predicted);
    }
}

/// A zlib stream of one deflate block whose only matches are runs of zeros (RFC
/// 1950, 1951), with fdeflate's Huffman code for filtered PNG rows (below). Runs carry
/// over between calls, so a run may span stretches and rows.
struct Deflate {
    bits: Bits,
    /// Zeros given by [`Deflate::zeros`] not yet in `adler`.
    unsummed: usize,
    adler: simd_adler32::Adler32,
}

/// The coded stream so far: whole bytes in `out`, the bits after them in `bits`
/// (least significant first, as deflate packs them), and the zeros not yet coded.
/// Copied into locals for a loop, so the hot state stays in registers.
struct Bits {
    out: Vec<u8>,
    bits: u64,
    count: u32,
    zeros: usize,
}

/// Adler-32's modulus.
const ADLER_MOD: u64 = 65521;

impl Deflate {
    fn new() -> Deflate {
        let mut bits = Bits { out: Vec::with_capacity(1 << 16), bits: 0, count: 0, zeros: 0 };
        bits.out.extend_from_slice(&HEADER[..HEADER.len() - 1]);
        bits.put(u64::from(HEADER[HEADER.len() - 1]), HEADER_LAST_BITS);
        Deflate { bits, unsummed: 0, adler: simd_adler32::Adler32::new() }
    }

    /// `n` zero bytes.
    fn zeros(&mut self, n: usize) {
        self.bits.zeros += n;
        self.unsummed += n;
    }

    fn bytes(&mut self, data: &[u8]) {
        self.sum_zeros();
        self.adler.write(data);
        let mut bits = Bits { out: std::mem::take(&mut self.bits.out), ..self.bits };
        // Filtered rows are mostly zeros even where they differ from the row above:
        // eight at a time where they are. A word with ink is coded as fdeflate does:
        // its low zero bytes end the current run, its middle bytes are literals (zeros
        // too: 2 bits each, and no branch per byte), its high zero bytes start a run.
        let mut words = data.chunks_exact(8);
        for word in &mut words {
            let value = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if value == 0 {
                bits.zeros += 8;
                continue;
            }
            let low = (value.trailing_zeros() / 8) as usize;
            let high = (value.leading_zeros() / 8) as usize;
            bits.zeros += low;
            bits.code_zeros();
            bits.literals(&word[low..8 - high]);
            bits.zeros = high;
        }
        for &byte in words.remainder() {
            if byte == 0 {
                bits.zeros += 1;
            } else {
                bits.code_zeros();
                bits.literals(&[byte]);
            }
        }
        self.bits = bits;
    }

    /// Adds the zeros given by [`Deflate::zeros`] to the checksum without reading them:
    /// over n zeros Adler-32's sum `a` stays and `b` gains n * a.
    fn sum_zeros(&mut self) {
        let n = std::mem::take(&mut self.unsummed) as u64;
        if n == 0 {
            return;
        }
        let checksum = self.adler.finish();
        let (a, b) = (u64::from(checksum & 0xffff), u64::from(checksum >> 16));
        let b = (b + (n % ADLER_MOD) * a) % ADLER_MOD;
        self.adler = simd_adler32::Adler32::from_checksum(((b as u32) << 16) | a as u32);
    }

    fn finish(mut self) -> Vec<u8> {
        self.sum_zeros();
        let mut bits = self.bits;
        bits.code_zeros();
        bits.symbol(256);
        let whole = bits.count.div_ceil(8) as usize;
        bits.out.extend_from_slice(&bits.bits.to_le_bytes()[..whole]);
        bits.out.extend_from_slice(&self.adler.finish().to_be_bytes());
        bits.out
    }
}

impl Bits {
    /// Appends the low `count` bits of `bits` (count <= 48), as fdeflate does.
    #[inline(always)]
    fn put(&mut self, bits: u64, count: u32) {
        self.bits |= bits << self.count;
        self.count += count;
        if self.count >= 64 {
            self.out.extend_from_slice(&self.bits.to_le_bytes());
            self.count -= 64;
            self.bits = bits.checked_shr(count - self.count).unwrap_or(0);
        }
    }

    #[inline(always)]
    fn symbol(&mut self, symbol: usize) {
        self.put(u64::from(CODES[symbol]), u32::from(LENGTHS[symbol]));
    }

    /// Up to 8 bytes as literals, four codes (at most 48 bits) at a time.
    #[inline(always)]
    fn literals(&mut self, bytes: &[u8]) {
        for four in bytes.chunks(4) {
            let (mut code, mut count) = (0u64, 0u32);
            for &byte in four {
                code |= u64::from(CODES[usize::from(byte)]) << count;
                count += u32::from(LENGTHS[usize::from(byte)]);
            }
            self.put(code, count);
        }
    }

    /// Codes the pending zeros (if any): a literal zero, then copies of the byte before
    /// at distance 1.
    #[inline(always)]
    fn code_zeros(&mut self) {
        match self.zeros {
            0 => {}
            // Up to five zeros are literals (what code_run writes for them), and the zero
            // literal's code is two 0 bits: one call.
            short @ 1..=5 => {
                self.zeros = 0;
                self.put(0, 2 * short as u32);
            }
            _ => self.code_run(),
        }
    }

    fn code_run(&mut self) {
        let mut left = std::mem::take(&mut self.zeros) - 1;
        self.symbol(0);
        while left >= 258 {
            self.symbol(285);
            // Distance 1 is the one-bit distance code 0.
            self.put(0, 1);
            left -= 258;
        }
        if left > 4 {
            let (symbol, extra, extra_bits) = length_code(left);
            self.symbol(symbol);
            self.put(u64::from(extra), extra_bits + 1);
        } else {
            for _ in 0..left {
                self.symbol(0);
            }
        }
    }
}

/// A copy length's symbol (257..=285), its extra bits and their count (RFC 1951 3.2.5).
fn length_code(length: usize) -> (usize, u32, u32) {
    const BASE: [u16; 29] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
    const EXTRA: [u32; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
    let index = BASE.partition_point(|&base| usize::from(base) <= length) - 1;
    (257 + index, (length - usize::from(BASE[index])) as u32, EXTRA[index])
}

// The code below is fdeflate 0.3's (github.com/image-rs/fdeflate, MIT OR Apache-2.0, as
// attnmap): one fixed dynamic-Huffman code, short for the small values and zeros that
// filtered PNG rows are made of. HEADER is the zlib header and the block header that
// declares it (LENGTHS, and a one-bit distance code); its last byte holds 5 bits.

const HEADER: [u8; 54] = [
    120, 1, 237, 192, 3, 160, 36, 89, 150, 198, 241, 255, 119, 238, 141, 200, 204, 167, 114, 75, 99, 174, 109, 219, 182, 109, 219, 182,
    109, 219, 182, 109, 105, 140, 158, 150, 74, 175, 158, 50, 51, 34, 238, 249, 118, 183, 106, 122, 166, 135, 59, 107, 213, 15,
];
const HEADER_LAST_BITS: u32 = 5;

/// Code lengths of the literals 0..=255, end of block (256) and the copy lengths (257..=285).
const LENGTHS: [u8; 286] = [
    2, 3, 4, 5, 5, 6, 6, 7, 7, 7, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11,
    11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10, 11, 10, 10, 10, 10, 10, 10, 10, 10, 10, 9, 9, 9, 9,
    9, 8, 9, 8, 8, 8, 8, 8, 7, 7, 7, 6, 6, 6, 5, 4, 3, 12, 12, 12, 9, 9, 11, 10, 11, 11, 10, 11, 11, 11, 11, 11, 11, 12, 11, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 9,
];

/// The canonical Huffman codes of [`LENGTHS`], bit-reversed for least-significant-first packing.
const CODES: [u16; 286] = {
    let mut codes = [0u16; 286];
    let mut code = 0u32;
    let mut length = 1;
    while length <= 16 {
        let mut symbol = 0;
        while symbol < 286 {
            if LENGTHS[symbol] == length {
                codes[symbol] = (code as u16).reverse_bits() >> (16 - length);
                code += 1;
            }
            symbol += 1;
        }
        code <<= 1;
        length += 1;
    }
    assert!(code == 2 << 16, "LENGTHS is not a complete prefix code");
    // Bits::code_zeros writes short runs of zero literals as 2 zero bits each.
    assert!(LENGTHS[0] == 2 && codes[0] == 0, "the zero literal's code is not 00");
    codes
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of every kind the pictures have: flat runs, repeated rows, noise.
    fn picture(width: u32, height: u32, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        };
        let stride = width as usize * 3;
        let mut pixels = vec![255u8; stride * height as usize];
        for y in 0..height as usize {
            let row = &mut pixels[y * stride..(y + 1) * stride];
            match y % 5 {
                0 | 1 => row.iter_mut().for_each(|v| *v = next()),
                2 if y > 0 => {}
                3 => row.chunks_mut(21).enumerate().for_each(|(i, run)| run.fill((i * 37) as u8)),
                _ => {}
            }
            if y % 5 == 2 && y > 0 {
                let (before, this) = pixels.split_at_mut(y * stride);
                this[..stride].copy_from_slice(&before[(y - 1) * stride..]);
            }
        }
        pixels
    }

    /// A standard decoder (the png crate, through image) reads back every pixel.
    #[test]
    fn encoded_pictures_decode_to_the_same_pixels() {
        for (width, height) in [(1, 1), (1, 9), (7, 1), (13, 11), (256, 40), (1182, 37)] {
            let pixels = picture(width, height, u64::from(width * 31 + height));
            let png = encode_rgb8(width, height, &pixels).unwrap();
            let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
            assert_eq!((decoded.width(), decoded.height()), (width, height));
            assert!(decoded.as_raw() == &pixels, "{width} x {height} decodes to other pixels");
        }
    }

    /// Data longer than one IDAT chunk is split across several, which decoders join.
    #[test]
    fn long_data_spans_several_idat_chunks() {
        let (width, height) = (700, 700);
        let mut state = 7u32;
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let png = encode_rgb8(width, height, &pixels).unwrap();
        assert!(png.len() > IDAT_BYTES + 1000, "noise should not compress below one chunk");
        let idats = png.windows(4).filter(|w| w == b"IDAT").count();
        assert!(idats >= 2, "{idats} IDAT chunk(s)");
        let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
        assert!(decoded.as_raw() == &pixels);
    }

    #[test]
    fn a_buffer_of_the_wrong_size_is_refused() {
        assert!(matches!(encode_rgb8(4, 4, &[0; 47]), Err(RenderError::ShapeMismatch { .. })));
        assert!(matches!(encode_rgb8(0, 4, &[]), Err(RenderError::ShapeMismatch { .. })));
    }
}
