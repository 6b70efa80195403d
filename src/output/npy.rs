//! NumPy's `.npy` format, as numpy/lib/format.py (NEP 1) defines it: the magic
//! `\x93NUMPY`, a major and minor version byte, the header length (u16 little-endian
//! in version 1, u32 in versions 2 and 3), then the header: a Python literal dict
//! with exactly the keys 'descr', 'fortran_order' and 'shape', padded with
//! spaces and ended by '\n' (Latin-1 text in versions 1 and 2, UTF-8 in 3).
//! attnmap writes version 1 and reads float32 arrays of any version; anything
//! else is refused with a message that says what was found.

/// Encode a float32 C-order array as NumPy `.npy` (format 1.0).
pub fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let mut bytes = npy_header(shape);
    bytes.reserve(values.len() * 4);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The bytes before the values of a float32 C-order `.npy` of `shape` (format 1.0): known
/// before any value is, so an array can be written a piece at a time.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The header (with magic, version and length) is padded to a multiple of 64 and ends in '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// A float32 `.npy` written a piece at a time (a dump's layers as they pass): the header
/// first, then the values in C order; [`NpyWriter::finish`] checks that they filled `shape`.
pub struct NpyWriter {
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    pub fn create(path: &std::path::Path, shape: &[usize]) -> crate::error::Result<Self> {
        use std::io::Write;
        let fail = |e: std::io::Error| crate::error::Error::output(path, format!("cannot be written ({e}); choose a folder you can write to"));
        let header = npy_header(shape);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(fail)?);
        file.write_all(&header).map_err(fail)?;
        Ok(Self { path: path.to_path_buf(), file, expected: shape.iter().product(), written: 0 })
    }

    /// Append the next values (little-endian f32).
    pub fn append(&mut self, values: &[f32]) -> crate::error::Result<()> {
        use std::io::Write;
        if self.written + values.len() > self.expected {
            return Err(crate::error::Error::output(&self.path, format!("got more than the {} values its shape holds", self.expected)));
        }
        // In pieces: one layer of a long input is hundreds of MB, its bytes need not be.
        let mut bytes = Vec::with_capacity(values.len().min(1 << 16) * 4);
        for chunk in values.chunks(1 << 16) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.file.write_all(&bytes).map_err(|e| crate::error::Error::output(&self.path, format!("cannot be written ({e}); is the disk full?")))?;
        }
        self.written += values.len();
        // What the buffer has passed on so far starts for the disk (see write_staged).
        super::start_writeback(self.file.get_ref());
        Ok(())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Flush, refusing an array its values did not fill.
    pub fn finish(self) -> crate::error::Result<()> {
        use std::io::Write;
        if self.written != self.expected {
            return Err(crate::error::Error::output(&self.path, format!("holds {} values but its shape needs {}", self.written, self.expected)));
        }
        let path = self.path.clone();
        let mut file = self.file.into_inner().map_err(|e| crate::error::Error::output(&path, format!("cannot be written ({}); is the disk full?", e.error())))?;
        // No fsync: arrays are written inside a staged folder, synced once when it is published.
        file.flush().map_err(|e| crate::error::Error::output(&path, format!("cannot be written ({e}); is the disk full?")))
    }
}

/// Read a float32 `.npy` (little- or big-endian, any format version): its shape
/// and values in C order.
pub fn read_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let (header, data) = split_header(bytes)?;
    let (shape, little_endian, count) = check_f32_header(&header)?;
    if count.checked_mul(4) != Some(data.len()) {
        return Err(format!("the data has {} bytes but shape {shape:?} of float32 needs {}", data.len(), count.saturating_mul(4)));
    }
    let mut values = Vec::with_capacity(count);
    decode_f32(data, little_endian, &mut values);
    Ok((shape, values))
}

/// As [`read_npy_f32`], reading the file through a small buffer instead of whole: the
/// values are the only copy held (a corpus's texts are read one after another this way).
pub fn read_npy_f32_file(path: &std::path::Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let mut reader = NpyReader::open(path)?;
    let count = reader.left;
    let mut values = Vec::with_capacity(count);
    reader.read(count, &mut values)?;
    Ok((reader.shape, values))
}

/// A float32 `.npy` file read in pieces: the header (checked against the file's size) when
/// opened, then the values in C order, as many at a time as asked (a layer of maps, say).
pub struct NpyReader {
    pub shape: Vec<usize>,
    little_endian: bool,
    /// Values not read yet.
    left: usize,
    reader: std::io::BufReader<std::fs::File>,
}

impl NpyReader {
    pub fn open(path: &std::path::Path) -> Result<Self, String> {
        use std::io::Read;
        // Checked before opening: opening a FIFO would wait for a writer.
        if !std::fs::metadata(path).map_err(|e| e.to_string())?.is_file() {
            return Err("not a regular file".into());
        }
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut reader = std::io::BufReader::new(file);
        let mut prefix = Vec::with_capacity(12);
        reader.by_ref().take(10).read_to_end(&mut prefix).map_err(|e| e.to_string())?;
        if prefix.len() == 10 && matches!(prefix[6], 2 | 3) {
            reader.by_ref().take(2).read_to_end(&mut prefix).map_err(|e| e.to_string())?;
        }
        let (start, length) = header_extent(&prefix)?;
        if (start + length) as u64 > size {
            return Err("truncated .npy header".into());
        }
        let mut raw = Vec::with_capacity(length);
        reader.by_ref().take(length as u64).read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let (shape, little_endian, count) = check_f32_header(&header_text(&prefix[6..8], &raw)?)?;
        let data_len = size - (start + length) as u64;
        if count.checked_mul(4).map(|n| n as u64) != Some(data_len) {
            return Err(format!("the data has {data_len} bytes but shape {shape:?} of float32 needs {}", count.saturating_mul(4)));
        }
        Ok(NpyReader { shape, little_endian, left: count, reader })
    }

    /// Append the next `count` values to `values`.
    pub fn read(&mut self, count: usize, values: &mut Vec<f32>) -> Result<(), String> {
        use std::io::Read;
        if count > self.left {
            return Err(format!("asked for {count} values, {} are left", self.left));
        }
        values.reserve(count);
        let mut buffer = vec![0u8; (count * 4).min(1 << 16)];
        let mut wanted = count * 4;
        while wanted > 0 {
            let chunk = wanted.min(buffer.len());
            self.reader
                .read_exact(&mut buffer[..chunk])
                .map_err(|e| format!("the data ended early ({e}; the file changed while it was read?)"))?;
            decode_f32(&buffer[..chunk], self.little_endian, values);
            wanted -= chunk;
        }
        self.left -= count;
        Ok(())
    }
}

/// The dtype and order checks of a float32 array: its shape, byte order and value count.
fn check_f32_header(text: &str) -> Result<(Vec<usize>, bool, usize), String> {
    let header = parse_header(text)?;
    let little_endian = match header.descr.as_str() {
        "<f4" => true,
        ">f4" => false,
        other => return Err(format!("only float32 arrays ('<f4') are read, this one has dtype {other:?}; save it with .astype('float32')")),
    };
    if header.fortran_order && header.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err("the array is in Fortran order; save it with np.ascontiguousarray(...) first".into());
    }
    let count = header.shape.iter().try_fold(1usize, |total, &d| total.checked_mul(d)).ok_or_else(|| format!("shape {:?} is too large", header.shape))?;
    Ok((header.shape, little_endian, count))
}

fn decode_f32(data: &[u8], little_endian: bool, values: &mut Vec<f32>) {
    values.extend(data.chunks_exact(4).map(|c| {
        let c = [c[0], c[1], c[2], c[3]];
        if little_endian {
            f32::from_le_bytes(c)
        } else {
            f32::from_be_bytes(c)
        }
    }));
}

/// The magic, version and length prefix: returns the header text and the data after it.
fn split_header(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let (start, length) = header_extent(bytes)?;
    let end = start.checked_add(length).filter(|&end| end <= bytes.len()).ok_or("truncated .npy header")?;
    Ok((header_text(&bytes[6..8], &bytes[start..end])?, &bytes[end..]))
}

/// Where the header starts and how long it is, from the magic, version and length prefix.
fn header_extent(bytes: &[u8]) -> Result<(usize, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (it does not start with \\x93NUMPY)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (length, start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        2 | 3 => return Err("truncated .npy header".into()),
        _ => return Err(format!(".npy format version {major}.{minor} is not one of 1.0, 2.0, 3.0")),
    };
    if minor != 0 {
        return Err(format!(".npy format version {major}.{minor} is not one of 1.0, 2.0, 3.0"));
    }
    Ok((start, length))
}

/// The header's text: Latin-1 in versions 1 and 2, UTF-8 in 3.
fn header_text(version: &[u8], raw: &[u8]) -> Result<String, String> {
    if version[0] == 3 {
        Ok(std::str::from_utf8(raw).map_err(|_| "the .npy header is not UTF-8")?.to_string())
    } else {
        // Latin-1: every byte is the code point of the same number.
        Ok(raw.iter().map(|&b| char::from(b)).collect())
    }
}

/// What the header dict says.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the Python literal subset .npy headers use.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(u64),
    Tuple(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

fn parse_header(text: &str) -> Result<Header, String> {
    let bad = |why: String| format!("the .npy header {:?} {why}", text.trim_end());
    let mut parser = Parser { chars: text.chars().collect(), at: 0 };
    let literal = parser.value().map_err(&bad)?;
    parser.skip_space();
    if parser.at != parser.chars.len() {
        return Err(bad(format!("has text after the dict at character {}", parser.at)));
    }
    let Literal::Dict(entries) = literal else { return Err(bad("is not a dict".into())) };
    let mut keys: Vec<&str> = Vec::new();
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in &entries {
        let Literal::Str(key) = key else { return Err(bad("has a key that is not a string".into())) };
        if keys.contains(&key.as_str()) {
            return Err(bad(format!("has the key {key:?} twice")));
        }
        keys.push(key);
        match (key.as_str(), value) {
            ("descr", Literal::Str(d)) => descr = Some(d.clone()),
            ("descr", _) => return Err(bad("has a 'descr' that is not a simple dtype string (structured arrays are not read)".into())),
            ("fortran_order", Literal::Bool(f)) => fortran_order = Some(*f),
            ("fortran_order", _) => return Err(bad("has a 'fortran_order' that is not True or False".into())),
            ("shape", Literal::Tuple(dims)) => {
                let dims = dims
                    .iter()
                    .map(|d| match d {
                        Literal::Int(n) => usize::try_from(*n).map_err(|_| bad(format!("has a dimension {n} too large"))),
                        _ => Err(bad("has a 'shape' with an entry that is not a whole number".into())),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                shape = Some(dims);
            }
            ("shape", _) => return Err(bad("has a 'shape' that is not a tuple".into())),
            (other, _) => return Err(bad(format!("has the key {other:?}; a .npy header has exactly 'descr', 'fortran_order' and 'shape'"))),
        }
    }
    match (descr, fortran_order, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape }),
        _ => Err(bad("lacks one of 'descr', 'fortran_order', 'shape'".into())),
    }
}

/// A recursive-descent reader of Python literals: strings ('…' or "…" with
/// backslash escapes of quotes and backslashes), True, False, whole numbers
/// (Python 2's trailing L allowed), tuples, lists and dicts, trailing commas allowed.
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        self.skip_space();
        match self.peek() {
            Some(c) if c == wanted => {
                self.at += 1;
                Ok(())
            }
            Some(c) => Err(format!("has {c:?} where {wanted:?} belongs (character {})", self.at)),
            None => Err(format!("ends where {wanted:?} belongs")),
        }
    }

    fn value(&mut self) -> Result<Literal, String> {
        self.skip_space();
        match self.peek() {
            Some('{') => {
                self.at += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_space();
                    if self.peek() == Some('}') {
                        self.at += 1;
                        return Ok(Literal::Dict(entries));
                    }
                    let key = self.value()?;
                    self.expect(':')?;
                    let value = self.value()?;
                    entries.push((key, value));
                    self.skip_space();
                    match self.peek() {
                        Some(',') => self.at += 1,
                        Some('}') => {}
                        _ => return Err(format!("lacks a ',' or '}}' at character {}", self.at)),
                    }
                }
            }
            Some(open @ ('(' | '[')) => {
                let close = if open == '(' { ')' } else { ']' };
                self.at += 1;
                let (mut items, mut comma_after_last) = (Vec::new(), false);
                loop {
                    self.skip_space();
                    if self.peek() == Some(close) {
                        self.at += 1;
                        // (3) is the number 3 in Python; a one-tuple is written (3,).
                        if open == '(' && items.len() == 1 && !comma_after_last {
                            return Err("has a parenthesised number where a tuple belongs (write (3,))".into());
                        }
                        return Ok(Literal::Tuple(items));
                    }
                    items.push(self.value()?);
                    comma_after_last = false;
                    self.skip_space();
                    match self.peek() {
                        Some(',') => {
                            self.at += 1;
                            comma_after_last = true;
                        }
                        Some(c) if c == close => {}
                        _ => return Err(format!("lacks a ',' or {close:?} at character {}", self.at)),
                    }
                }
            }
            Some(quote @ ('\'' | '"')) => {
                self.at += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err("has a string that is never closed".into()),
                        Some('\\') => {
                            let escaped = self.chars.get(self.at + 1).copied().ok_or("has a string that is never closed")?;
                            text.push(escaped);
                            self.at += 2;
                        }
                        Some(c) if c == quote => {
                            self.at += 1;
                            return Ok(Literal::Str(text));
                        }
                        Some(c) => {
                            text.push(c);
                            self.at += 1;
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                let digits: String = self.chars[start..self.at].iter().collect();
                if self.peek() == Some('L') {
                    self.at += 1;
                }
                digits.parse().map(Literal::Int).map_err(|_| format!("has a number {digits} too large"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let word: String = self.chars[start..self.at].iter().collect();
                match word.as_str() {
                    "True" => Ok(Literal::Bool(true)),
                    "False" => Ok(Literal::Bool(false)),
                    _ => Err(format!("has {word:?}, which is not a Python literal this reader knows")),
                }
            }
            Some(c) => Err(format!("has {c:?} where a value belongs (character {})", self.at)),
            None => Err("ends where a value belongs".into()),
        }
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend([version, 0]);
        if version == 1 {
            bytes.extend((header.len() as u16).to_le_bytes());
        } else {
            bytes.extend((header.len() as u32).to_le_bytes());
        }
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn round_trips_and_is_aligned() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 / 7.0).collect();
        let bytes = npy_f32(&[2, 3, 4], &values);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(read_npy_f32(&bytes).unwrap(), (vec![2, 3, 4], values));
        assert_eq!(read_npy_f32(&npy_f32(&[5], &[1.0; 5])).unwrap().0, vec![5]);
    }

    /// Headers as numpy writes them in every version, with keys in any order,
    /// double quotes, no trailing comma, and a 0-d array.
    #[test]
    fn reads_what_numpy_may_write() {
        let data = floats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for version in [1, 2, 3] {
            let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";
            assert_eq!(read_npy_f32(&with_header(version, header, &data)).unwrap().0, vec![2, 3], "version {version}");
        }
        let header = "{\"shape\": (3, 2), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
        assert_eq!(read_npy_f32(&with_header(1, header, &data)).unwrap().0, vec![3, 2]);
        let scalar = with_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n", &floats(&[7.5]));
        assert_eq!(read_npy_f32(&scalar).unwrap(), (vec![], vec![7.5]));
        let python2 = with_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6L,)}\n", &data);
        assert_eq!(read_npy_f32(&python2).unwrap().0, vec![6]);
        let big_endian: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let big = with_header(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}\n", &big_endian);
        assert_eq!(read_npy_f32(&big).unwrap().1, vec![1.5, -2.0]);
    }

    /// The file reader reads what the byte reader reads, and refuses what it refuses, for
    /// arrays larger than its buffer (a value split across reads) and headers of every version.
    #[test]
    fn the_file_reader_agrees_with_the_byte_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let values: Vec<f32> = (0..50_001).map(|i| (i as f32).sin()).collect();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (50001,), }\n";
        let big_endian: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let cases = [
            npy_f32(&[7, 7143], &values[..50_001]),
            with_header(2, header, &floats(&values)),
            with_header(3, header, &floats(&values)),
            with_header(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}\n", &big_endian),
            with_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n", &floats(&[7.5])),
        ];
        for bytes in cases {
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read_npy_f32_file(&path).unwrap(), read_npy_f32(&bytes).unwrap());
        }
        let whole = npy_f32(&[4, 4], &[0.25; 16]);
        for cut in [3, 11, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read_npy_f32(&whole[..cut]).is_err());
            assert!(read_npy_f32_file(&path).is_err(), "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.extend([0; 4]);
        std::fs::write(&path, &longer).unwrap();
        assert!(read_npy_f32_file(&path).unwrap_err().contains("68 bytes"));
        assert!(read_npy_f32_file(dir.path()).unwrap_err().contains("not a regular file"));
    }

    /// What the old substring matcher let through or misread.
    #[test]
    fn refuses_what_it_does_not_read_with_a_reason() {
        let data = floats(&[0.0; 6]);
        let refused = |header: &str, data: &[u8], needle: &str| {
            let error = read_npy_f32(&with_header(1, header, data)).unwrap_err();
            assert!(error.contains(needle), "{header:?}: {error}");
        };
        refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)}\n", &data, "dtype \"<f8\"");
        refused("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}\n", &data, "Fortran order");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}\n", &data, "'extra'");
        refused("{'descr': '<f4', 'shape': (2, 3)}\n", &data, "lacks one of");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)\n", &data, "'}'");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}\n", &data, "(3,)");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}\n", &data, "'-'");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4)}\n", &data, "needs 32");
        // A key that merely contains the words the substring matcher looked for.
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': \"'fortran_order': False\"}\n", &data, "'x'");
        refused("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999)}\n", &data, "too large");
        let mut wrong_version = with_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}\n", &data);
        wrong_version[6] = 4;
        assert!(read_npy_f32(&wrong_version).unwrap_err().contains("version 4.0"));
        assert!(read_npy_f32(b"PK\x03\x04 a zip").unwrap_err().contains("not a .npy file"));
        let mut truncated = with_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}\n", &data);
        truncated.truncate(30);
        assert!(read_npy_f32(&truncated).unwrap_err().contains("truncated"));
    }
}
