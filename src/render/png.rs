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
//!
//! A dump's pictures share everything but their title, cells and colour-scale ticks:
//! a [`Template`] codes the shared part once, and each picture codes only what it drew.

use super::RenderError;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
/// The filter type byte that starts every Paeth-filtered row.
const PAETH: u8 = 4;
/// Compressed data per IDAT chunk: a chunk's length must stay below 2^31.
const IDAT_BYTES: usize = 1 << 20;

/// `pixels` (row-major RGB8, `width` x `height`) as a PNG file.
pub(super) fn encode_rgb8(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, RenderError> {
    let stride = check_size(width, height, pixels)?;
    let mut deflate = Deflate::new();
    let zeros = vec![0u8; stride];
    let mut line = vec![0u8; stride];
    let mut above: &[u8] = &zeros;
    for row in pixels.chunks_exact(stride) {
        deflate.bytes(&[PAETH]);
        paeth(row, above, 0, stride, &mut line, &mut deflate);
        above = row;
    }
    Ok(png_file(width, height, &deflate.finish()))
}

/// A rectangle of pixels, `(x0, y0, x1, y1)`, the ends excluded.
pub(super) type Rect = (u32, u32, u32, u32);

/// What every picture drawn on one frame shares: outside a few rectangles its pixels
/// are the frame's, so most of its filtered bytes (a byte depends on its pixel, the
/// one left of it and the two above those) are known in advance. They are coded once,
/// here, and copied into each picture's stream as bits; only the bytes the rectangles
/// reach are filtered and coded per picture ([`Template::encode`]).
pub(super) struct Template {
    width: u32,
    height: u32,
    pieces: Vec<Piece>,
}

/// A stretch of the filtered picture (its rows one after another, each led by its
/// filter type byte), in order.
enum Piece {
    /// Bytes known in advance, coded.
    Known(Coded),
    /// The filtered bytes `start..end` of row `row`'s pixel bytes, worked out per picture.
    Drawn { row: usize, start: usize, end: usize },
}

/// Bytes coded on their own: no run continues into or out of them, so the bits can be
/// copied into any stream at any bit position. `out` is whole 64-bit words, `bits` the
/// `count` bits after them; `adler` and `len` are the Adler-32 and length of the bytes.
struct Coded {
    out: Vec<u8>,
    bits: u64,
    count: u32,
    adler: u32,
    len: usize,
}

impl Template {
    /// The template of pictures that equal `frame` (`width` x `height`, RGB8) except
    /// inside the rectangles `drawn` (clipped to the picture).
    pub(super) fn new(width: u32, height: u32, frame: &[u8], drawn: &[Rect]) -> Result<Template, RenderError> {
        let stride = check_size(width, height, frame)?;
        let zeros = vec![0u8; stride];
        let mut line = vec![0u8; stride];
        let mut known = vec![PAETH];
        let mut pieces = Vec::new();
        let mut above: &[u8] = &zeros;
        for (y, row) in frame.chunks_exact(stride).enumerate() {
            if y > 0 {
                known.push(PAETH);
            }
            filter(row, above, &mut line);
            let mut from = 0;
            for (x0, x1) in drawn_spans(y as u32, width, drawn) {
                let (start, end) = (x0 as usize * 3, x1 as usize * 3);
                known.extend_from_slice(&line[from..start]);
                if !known.is_empty() {
                    pieces.push(Piece::Known(Coded::new(&known)));
                    known.clear();
                }
                pieces.push(Piece::Drawn { row: y, start, end });
                from = end;
            }
            known.extend_from_slice(&line[from..]);
            above = row;
        }
        if !known.is_empty() {
            pieces.push(Piece::Known(Coded::new(&known)));
        }
        Ok(Template { width, height, pieces })
    }

    /// `pixels`, which equal the frame outside the drawn rectangles, as a PNG file:
    /// the same pixels as [`encode_rgb8`]'s file.
    pub(super) fn encode(&self, pixels: &[u8]) -> Result<Vec<u8>, RenderError> {
        let stride = check_size(self.width, self.height, pixels)?;
        let mut deflate = Deflate::new();
        let zeros = vec![0u8; stride];
        let mut line = vec![0u8; stride];
        for piece in &self.pieces {
            match *piece {
                Piece::Known(ref coded) => deflate.append(coded),
                Piece::Drawn { row, start, end } => {
                    let above = if row == 0 { &zeros[..] } else { &pixels[(row - 1) * stride..row * stride] };
                    paeth(&pixels[row * stride..(row + 1) * stride], above, start, end, &mut line, &mut deflate);
                }
            }
        }
        Ok(png_file(self.width, self.height, &deflate.finish()))
    }
}

/// The pixel columns of row `y` whose filtered bytes a change inside `drawn` can
/// reach: each rectangle widened by one pixel right and one row down (the Paeth
/// filter reads the pixels left, above and above left), merged and in order.
fn drawn_spans(y: u32, width: u32, drawn: &[Rect]) -> Vec<(u32, u32)> {
    let mut spans: Vec<(u32, u32)> = drawn
        .iter()
        .filter(|&&(x0, y0, x1, y1)| x0 < x1 && y0 < y1 && y0 <= y && y <= y1 && x0 < width)
        .map(|&(x0, _, x1, _)| (x0, x1.saturating_add(1).min(width)))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
    for (x0, x1) in spans {
        match merged.last_mut() {
            Some(last) if x0 <= last.1 => last.1 = last.1.max(x1),
            _ => merged.push((x0, x1)),
        }
    }
    merged
}

/// The row stride in bytes, once `pixels` is known to be `width` x `height` RGB8.
fn check_size(width: u32, height: u32, pixels: &[u8]) -> Result<usize, RenderError> {
    let stride = width as usize * 3;
    if width == 0 || height == 0 || pixels.len() != stride * height as usize {
        return Err(RenderError::ShapeMismatch {
            shape: format!("[{height} rows, {width} RGB pixels]"),
            expected: stride * height as usize,
            got: pixels.len(),
        });
    }
    Ok(stride)
}

/// The PNG file around a zlib stream of the filtered rows.
fn png_file(width: u32, height: u32, compressed: &[u8]) -> Vec<u8> {
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
    out
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

/// The Paeth filter of bytes `start..end` (whole pixels) of one RGB8 row given the row
/// above (zeros for the first row), handed to `deflate`; `out` is scratch of the row's length.
///
/// Wherever a stretch of the row and the pixel before it equal the row above, the
/// prediction is exact and the filtered bytes are zeros (x = b and a = c: p = b, and
/// either b = c, so a is chosen and a = b, or |p - b| = 0 wins): most of a heatmap
/// (a cell's rows, flat background) is such stretches, so they are found with a
/// comparison and filled rather than worked out.
fn paeth(row: &[u8], above: &[u8], mut start: usize, end: usize, out: &mut [u8], deflate: &mut Deflate) {
    let from = start.saturating_sub(3);
    if row[from..end] == above[from..end] {
        deflate.zeros(end - start);
        return;
    }
    if start == 0 {
        first_pixel(row, above, out);
        deflate.bytes(&out[..3]);
        start = 3;
    }
    while start < end {
        let stop = (start + STRETCH).min(end);
        if row[start - 3..stop] == above[start - 3..stop] {
            deflate.zeros(stop - start);
        } else {
            paeth_range(row, above, out, start, stop);
            deflate.bytes(&out[start..stop]);
        }
        start = stop;
    }
}

/// The Paeth filter of a whole row into `out`, plainly: what [`paeth`] codes.
fn filter(row: &[u8], above: &[u8], out: &mut [u8]) {
    first_pixel(row, above, out);
    paeth_range(row, above, out, 3, row.len());
}

/// The filtered first pixel of a row: with no left neighbour, its predictor is the pixel above.
fn first_pixel(row: &[u8], above: &[u8], out: &mut [u8]) {
    for ((o, &x), &b) in out[..3].iter_mut().zip(&row[..3]).zip(&above[..3]) {
        *o = x.wrapping_sub(b);
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
        self.bits.bytes(data);
    }

    /// Bytes coded on their own ([`Coded`]): the run before them is ended first.
    fn append(&mut self, coded: &Coded) {
        self.sum_zeros();
        self.adler = simd_adler32::Adler32::from_checksum(adler_combine(self.adler.finish(), coded.adler, coded.len));
        self.bits.code_zeros();
        self.bits.append(coded);
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
    fn bytes(&mut self, data: &[u8]) {
        let mut bits = Bits { out: std::mem::take(&mut self.out), ..*self };
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
        *self = bits;
    }

    /// The bits of `coded` after these.
    fn append(&mut self, coded: &Coded) {
        if self.count == 0 {
            self.out.extend_from_slice(&coded.out);
        } else {
            let shift = self.count;
            self.out.reserve(coded.out.len());
            for word in coded.out.chunks_exact(8) {
                let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                self.out.extend_from_slice(&(self.bits | word << shift).to_le_bytes());
                self.bits = word >> (64 - shift);
            }
        }
        if coded.count > 32 {
            self.put(coded.bits & 0xffff_ffff, 32);
            self.put(coded.bits >> 32, coded.count - 32);
        } else {
            self.put(coded.bits, coded.count);
        }
    }

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

impl Coded {
    fn new(bytes: &[u8]) -> Coded {
        let mut bits = Bits { out: Vec::with_capacity(bytes.len() / 4 + 8), bits: 0, count: 0, zeros: 0 };
        bits.bytes(bytes);
        bits.code_zeros();
        Coded { out: bits.out, bits: bits.bits, count: bits.count, adler: simd_adler32::adler32(&bytes), len: bytes.len() }
    }
}

/// The Adler-32 of two byte strings one after the other, from theirs and the second's
/// length (zlib's adler32_combine): the first's sums carry on over the second's bytes.
fn adler_combine(first: u32, second: u32, second_len: usize) -> u32 {
    let rem = second_len as u64 % ADLER_MOD;
    let (a1, b1) = (u64::from(first & 0xffff), u64::from(first >> 16));
    let (a2, b2) = (u64::from(second & 0xffff), u64::from(second >> 16));
    let a = (a1 + a2 + ADLER_MOD - 1) % ADLER_MOD;
    let b = (b1 + b2 + rem * a1 % ADLER_MOD + ADLER_MOD - rem) % ADLER_MOD;
    ((b as u32) << 16) | a as u32
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

    /// The pixels a standard decoder (the png crate, through image) reads from `png`.
    fn decode(png: &[u8]) -> Vec<u8> {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap().to_rgb8().into_raw()
    }

    /// Pictures that differ from a frame only inside some rectangles, encoded with the
    /// frame's template, decode to their own pixels: rectangles at the edges, touching,
    /// overlapping, one pixel wide, reaching past the picture, and none at all.
    #[test]
    fn pictures_encoded_with_a_template_decode_to_their_pixels() {
        let cases: [(u32, u32, &[Rect]); 7] = [
            (40, 30, &[(5, 3, 20, 12)]),
            (40, 30, &[(0, 0, 40, 2), (30, 5, 40, 25), (8, 6, 29, 28)]),
            (40, 30, &[(0, 0, 1, 30), (39, 29, 40, 30)]),
            (40, 30, &[(10, 10, 20, 20), (15, 15, 25, 25), (20, 10, 30, 20)]),
            (40, 30, &[(35, 25, 90, 90)]),
            (1182, 37, &[(0, 2, 1182, 9), (160, 12, 1050, 37), (1120, 0, 1182, 37)]),
            (13, 11, &[]),
        ];
        for (case, (width, height, drawn)) in cases.into_iter().enumerate() {
            let frame = picture(width, height, case as u64 + 1);
            let template = Template::new(width, height, &frame, drawn).unwrap();
            assert!(decode(&template.encode(&frame).unwrap()) == frame, "case {case}: the frame itself");
            for seed in 0..3u64 {
                // Inside the rectangles: another picture (noise, flat runs, repeated rows).
                let other = picture(width, height, 100 + seed * 7 + case as u64);
                let mut pixels = frame.clone();
                for &(x0, y0, x1, y1) in drawn {
                    for y in y0..y1.min(height) {
                        let row = (y * width * 3) as usize;
                        let (start, end) = (row + x0.min(width) as usize * 3, row + x1.min(width) as usize * 3);
                        pixels[start..end].copy_from_slice(&other[start..end]);
                    }
                }
                let png = template.encode(&pixels).unwrap();
                assert!(decode(&png) == pixels, "case {case}, seed {seed}: decodes to other pixels");
            }
        }
    }

    /// The template stands for its frame: a picture drawn outside the rectangles it was
    /// told of is not what it encodes, so a wrong list of rectangles shows in a test.
    #[test]
    fn a_change_outside_the_drawn_rectangles_is_not_encoded() {
        let (width, height) = (24, 16);
        let frame = picture(width, height, 5);
        let template = Template::new(width, height, &frame, &[(2, 2, 10, 10)]).unwrap();
        let mut pixels = frame.clone();
        pixels[(12 * width as usize + 15) * 3] ^= 0x55;
        assert!(decode(&template.encode(&pixels).unwrap()) == frame);
        assert!(matches!(template.encode(&pixels[3..]), Err(RenderError::ShapeMismatch { .. })));
    }

    #[test]
    fn adler_of_two_strings_combines() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for split in [0, 1, 5552, 65_521, 65_522, 69_999, 70_000] {
            let (first, second) = data.split_at(split);
            let combined = adler_combine(simd_adler32::adler32(&first), simd_adler32::adler32(&second), second.len());
            assert_eq!(combined, simd_adler32::adler32(&data.as_slice()), "split at {split}");
        }
    }

    #[test]
    fn a_buffer_of_the_wrong_size_is_refused() {
        assert!(matches!(encode_rgb8(4, 4, &[0; 47]), Err(RenderError::ShapeMismatch { .. })));
        assert!(matches!(encode_rgb8(0, 4, &[]), Err(RenderError::ShapeMismatch { .. })));
    }
}
