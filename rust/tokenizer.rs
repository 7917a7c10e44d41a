//! Character tokenizer over Unicode code points, and n-gram entropies of token arrays.
//!
//! The vocabulary built from a corpus is its sorted distinct code points, so the same text gives
//! the same ids everywhere. Ids are `u16` while the vocabulary fits (<= 65,536 entries), else `u32`.
//! Encoding is the hot path (whole corpora at once): ASCII goes through a 128-entry table sixteen
//! bytes at a time; only non-ASCII characters are decoded one by one.

use crate::error::{CoreError, CoreResult};
use crate::invalid;
use crate::rng::mix;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

/// Marks "not in the vocabulary" in lookup tables; ids are < 2^31, so the top bit is free.
const MISSING: u32 = 0x8000_0000;
/// Code points below this are looked up in a dense table, the rest (rare) in a hash map.
const DENSE_LIMIT: u32 = 0x1_0000;
/// Largest vocabulary whose ids fit in `u16`.
pub const U16_VOCAB_MAX: usize = 1 << 16;
/// Version written into, and required from, the JSON form.
const JSON_VERSION: u64 = 1;
const JSON_KIND: &str = "pyphase.CharTokenizer";

/// What `encode` does with a character outside the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// Fail, naming the character and its byte offset.
    Error,
    /// Map it to the tokenizer's unk id (an error if it has none).
    Unk,
}

impl Unknown {
    pub fn parse(s: &str) -> CoreResult<Self> {
        match s {
            "error" => Ok(Unknown::Error),
            "unk" => Ok(Unknown::Unk),
            other => Err(invalid!(
                "unknown must be \"error\" or \"unk\", got {other:?}"
            )),
        }
    }
}

/// Integer types that token ids are written as.
pub trait TokenId: Copy + Default + Send + Sync {
    fn from_id(id: u32) -> Self;
}
impl TokenId for u16 {
    #[inline(always)]
    fn from_id(id: u32) -> Self {
        id as u16
    }
}
impl TokenId for u32 {
    #[inline(always)]
    fn from_id(id: u32) -> Self {
        id
    }
}

/// Integer types that token ids are read from (decode, n-gram statistics). Negative values and
/// values beyond `u32` become `None`.
pub trait IdLike: Copy + Send + Sync + std::fmt::Display {
    fn to_id(self) -> Option<u32>;
    /// The ids as `u16`, when that is their type (decode has a table-driven path for them).
    fn as_u16s(_ids: &[Self]) -> Option<&[u16]> {
        None
    }
}
macro_rules! id_like {
    ($($t:ty),*) => {$(
        impl IdLike for $t {
            #[inline(always)]
            fn to_id(self) -> Option<u32> { u32::try_from(self).ok() }
        }
    )*};
}
id_like!(u8, u32, u64, i8, i16, i32, i64);
impl IdLike for u16 {
    #[inline(always)]
    fn to_id(self) -> Option<u32> {
        Some(self as u32)
    }
    fn as_u16s(ids: &[Self]) -> Option<&[u16]> {
        Some(ids)
    }
}

/// Below this many ids, building decode's 64 KiB table costs more than it saves.
const DECODE_TABLE_MIN_IDS: usize = 1 << 14;

/// Encoded ids in the tokenizer's dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Ids {
    pub fn len(&self) -> usize {
        match self {
            Ids::U16(v) => v.len(),
            Ids::U32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Location of the first invalid UTF-8 byte, as a user-facing error.
pub fn check_utf8(bytes: &[u8]) -> CoreResult<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let bad: Vec<String> = bytes[at..bytes.len().min(at + 4)]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        invalid!(
            "invalid UTF-8 at byte offset {at} (bytes {})",
            bad.join(" ")
        )
    })
}

fn read_file(path: &Path) -> CoreResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CoreError::Io(format!("cannot read {}: {e}", path.display())))
}

fn describe_char(c: char) -> String {
    format!("{c:?} (U+{:04X})", c as u32)
}

#[derive(Clone, Debug)]
pub struct CharTokenizer {
    vocab: Vec<char>,
    unk: Option<u32>,
    /// id of each ASCII byte, or MISSING.
    ascii: [u32; 128],
    /// id of each code point below `dense.len()` (<= DENSE_LIMIT), or MISSING.
    dense: Vec<u32>,
    /// ids of code points >= DENSE_LIMIT.
    astral: HashMap<u32, u32>,
    /// UTF-8 bytes of each id, padded to 4, and their length (decode writes 4 and advances len).
    utf8: Vec<[u8; 4]>,
    utf8_len: Vec<u8>,
}

impl CharTokenizer {
    /// Tokenizer over `vocab` in the given order (id = position). `unk`, if not in `vocab`, is
    /// appended as the last id.
    pub fn new(mut vocab: Vec<char>, unk: Option<char>) -> CoreResult<Self> {
        if let Some(u) = unk {
            if !vocab.contains(&u) {
                vocab.push(u);
            }
        }
        if vocab.is_empty() {
            return Err(invalid!(
                "the vocabulary is empty: a tokenizer needs at least one character"
            ));
        }
        let mut ascii = [MISSING; 128];
        let max_dense = vocab
            .iter()
            .map(|&c| c as u32)
            .filter(|&c| c < DENSE_LIMIT)
            .max()
            .unwrap_or(0);
        let mut dense = vec![MISSING; max_dense as usize + 1];
        let mut astral = HashMap::new();
        let mut utf8 = Vec::with_capacity(vocab.len());
        let mut utf8_len = Vec::with_capacity(vocab.len());
        for (id, &c) in vocab.iter().enumerate() {
            let cp = c as u32;
            let id = id as u32;
            let slot = if cp < DENSE_LIMIT {
                &mut dense[cp as usize]
            } else {
                astral.entry(cp).or_insert(MISSING)
            };
            if *slot != MISSING {
                return Err(invalid!(
                    "the vocabulary lists {} twice (ids {} and {id})",
                    describe_char(c),
                    *slot
                ));
            }
            *slot = id;
            if cp < 128 {
                ascii[cp as usize] = id;
            }
            let mut buf = [0u8; 4];
            let n = c.encode_utf8(&mut buf).len();
            utf8.push(buf);
            utf8_len.push(n as u8);
        }
        let unk = unk.map(|u| vocab.iter().position(|&c| c == u).unwrap_or(0) as u32);
        Ok(Self {
            vocab,
            unk,
            ascii,
            dense,
            astral,
            utf8,
            utf8_len,
        })
    }

    /// Tokenizer whose vocabulary is the sorted distinct characters of `text` (plus `unk`).
    pub fn from_text(text: &str, unk: Option<char>) -> CoreResult<Self> {
        if text.is_empty() && unk.is_none() {
            return Err(invalid!("cannot build a vocabulary from empty text"));
        }
        let mut seen_ascii = [false; 128];
        let mut other: Vec<char> = Vec::new();
        let mut seen_dense = vec![false; DENSE_LIMIT as usize];
        for c in text.chars() {
            let cp = c as u32;
            if cp < 128 {
                seen_ascii[cp as usize] = true;
            } else if cp < DENSE_LIMIT {
                if !seen_dense[cp as usize] {
                    seen_dense[cp as usize] = true;
                    other.push(c);
                }
            } else {
                other.push(c);
            }
        }
        let mut vocab: Vec<char> = (0u8..128)
            .filter(|&b| seen_ascii[b as usize])
            .map(char::from)
            .collect();
        vocab.extend(other);
        if let Some(u) = unk {
            vocab.push(u);
        }
        vocab.sort_unstable();
        vocab.dedup();
        Self::new(vocab, unk)
    }

    pub fn from_bytes(bytes: &[u8], unk: Option<char>) -> CoreResult<Self> {
        Self::from_text(check_utf8(bytes)?, unk)
    }

    pub fn from_file(path: &Path, unk: Option<char>) -> CoreResult<Self> {
        let bytes = read_file(path)?;
        Self::from_bytes(&bytes, unk).map_err(|e| invalid!("{}: {e}", path.display()))
    }

    pub fn vocab(&self) -> &[char] {
        &self.vocab
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn unk(&self) -> Option<char> {
        self.unk.map(|i| self.vocab[i as usize])
    }

    /// "uint16" or "uint32": the narrowest unsigned type holding every id.
    pub fn dtype(&self) -> &'static str {
        if self.vocab.len() <= U16_VOCAB_MAX {
            "uint16"
        } else {
            "uint32"
        }
    }

    #[inline(always)]
    fn lookup(&self, cp: u32) -> u32 {
        if let Some(&id) = self.dense.get(cp as usize) {
            id
        } else if cp >= DENSE_LIMIT {
            self.astral.get(&cp).copied().unwrap_or(MISSING)
        } else {
            MISSING
        }
    }

    /// The unk id, or an error explaining that `unknown="unk"` needs one.
    fn unk_id(&self) -> CoreResult<u32> {
        self.unk.ok_or_else(|| {
            invalid!(
                "unknown=\"unk\" needs a tokenizer with an unk character (build it with unk=...)"
            )
        })
    }

    fn unknown_char(&self, c: char, offset: usize) -> CoreError {
        invalid!(
            "character {} at byte offset {offset} is not in the vocabulary ({} characters); \
             pass unknown=\"unk\" to map it to the unk character",
            describe_char(c),
            self.vocab.len()
        )
    }

    /// Encode text into ids of the tokenizer's dtype.
    pub fn encode(&self, text: &str, unknown: Unknown) -> CoreResult<Ids> {
        if self.vocab.len() <= U16_VOCAB_MAX {
            self.encode_as::<u16>(text, unknown).map(Ids::U16)
        } else {
            self.encode_as::<u32>(text, unknown).map(Ids::U32)
        }
    }

    /// Encode UTF-8 bytes (validated first; invalid UTF-8 is an error naming the byte offset).
    pub fn encode_bytes(&self, bytes: &[u8], unknown: Unknown) -> CoreResult<Ids> {
        self.encode(check_utf8(bytes)?, unknown)
    }

    pub fn encode_file(&self, path: &Path, unknown: Unknown) -> CoreResult<Ids> {
        let bytes = read_file(path)?;
        self.encode_bytes(&bytes, unknown)
            .map_err(|e| invalid!("{}: {e}", path.display()))
    }

    /// Encode into ids of type `T` (`T` must hold every id: callers pick it via `dtype`).
    pub fn encode_as<T: TokenId>(&self, text: &str, unknown: Unknown) -> CoreResult<Vec<T>> {
        let mut out = vec![T::default(); text.chars().count()];
        let n = self.encode_into(text, unknown, &mut out)?;
        debug_assert_eq!(n, out.len());
        Ok(out)
    }

    /// Encode into `out`, which must hold at least one slot per character of `text`; returns
    /// the number of ids written (the character count).
    pub fn encode_into<T: TokenId>(
        &self,
        text: &str,
        unknown: Unknown,
        out: &mut [T],
    ) -> CoreResult<usize> {
        let unk = match unknown {
            Unknown::Error => None,
            Unknown::Unk => Some(self.unk_id()?),
        };
        // In unk mode missing ASCII maps straight to unk, so the fast path never stops for it.
        let mut ascii = self.ascii;
        if let Some(u) = unk {
            for v in ascii.iter_mut().filter(|v| **v == MISSING) {
                *v = u;
            }
        }
        let bytes = text.as_bytes();
        let n = bytes.len();
        let (mut i, mut j) = (0usize, 0usize);
        const W: usize = 16;
        while i < n {
            if i + W <= n && j + W <= out.len() {
                let chunk: &[u8; W] = bytes[i..i + W].try_into().expect("slice of length W");
                if u128::from_le_bytes(*chunk) & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 {
                    let dst: &mut [T; W] =
                        (&mut out[j..j + W]).try_into().expect("slice of length W");
                    let mut flags = 0u32;
                    for k in 0..W {
                        let id = ascii[chunk[k] as usize];
                        flags |= id;
                        dst[k] = T::from_id(id);
                    }
                    if flags & MISSING == 0 {
                        i += W;
                        j += W;
                        continue;
                    }
                    // A character outside the vocabulary in this chunk: the one-by-one path
                    // below reports it with its exact offset.
                }
            }
            let b = bytes[i];
            let (cp, width) = if b < 0x80 {
                (b as u32, 1)
            } else {
                // `text` is valid UTF-8, so the continuation bytes exist.
                let c = text[i..]
                    .chars()
                    .next()
                    .expect("valid UTF-8 has a char here");
                (c as u32, c.len_utf8())
            };
            let mut id = if cp < 128 {
                ascii[cp as usize]
            } else {
                self.lookup(cp)
            };
            if id == MISSING {
                id = match unk {
                    Some(u) => u,
                    None => {
                        let c = char::from_u32(cp).expect("decoded from valid UTF-8");
                        return Err(self.unknown_char(c, i));
                    }
                };
            }
            let Some(slot) = out.get_mut(j) else {
                return Err(invalid!(
                    "output buffer of {} ids is too short for the text",
                    out.len()
                ));
            };
            *slot = T::from_id(id);
            i += width;
            j += 1;
        }
        Ok(j)
    }

    /// Decode ids back to text. An id outside the vocabulary is an error naming it and its position.
    pub fn decode<I: IdLike>(&self, ids: &[I]) -> CoreResult<String> {
        let v = self.vocab.len();
        let bad = |pos: usize| {
            invalid!(
                "id {} at position {pos} is out of range for a vocabulary of {v}",
                ids[pos]
            )
        };
        let all_ascii = self.utf8_len.iter().all(|&l| l == 1);
        let mut out: Vec<u8>;
        if all_ascii && ids.len() >= DECODE_TABLE_MIN_IDS && I::as_u16s(ids).is_some() {
            // Every u16 id indexes a 64 KiB table; ids outside the vocabulary map to 0x80 (never
            // an ASCII byte), so one OR over a chunk checks it, with no branch per id. Measured
            // 3x faster than a bounds-checked lookup per id.
            let ids16 = I::as_u16s(ids).expect("checked above");
            let mut table = vec![0x80u8; 1 << 16];
            for (t, b) in table.iter_mut().zip(&self.utf8) {
                *t = b[0];
            }
            out = vec![0u8; ids.len()];
            const W: usize = 16;
            let mut flags = 0u8;
            for (d, chunk) in out.chunks_mut(W).zip(ids16.chunks(W)) {
                for (c, &id) in d.iter_mut().zip(chunk) {
                    *c = table[id as usize];
                    flags |= *c;
                }
            }
            if flags & 0x80 != 0 {
                let pos = ids16
                    .iter()
                    .position(|&i| i as usize >= v)
                    .expect("an id is out of range");
                return Err(bad(pos));
            }
        } else if all_ascii {
            let table: Vec<u8> = self.utf8.iter().map(|b| b[0]).collect();
            out = vec![0u8; ids.len()];
            for (pos, (d, &id)) in out.iter_mut().zip(ids).enumerate() {
                match id.to_id().and_then(|i| table.get(i as usize)) {
                    Some(&c) => *d = c,
                    None => return Err(bad(pos)),
                }
            }
        } else {
            let max_len = *self.utf8_len.iter().max().unwrap_or(&1) as usize;
            // Each id writes 4 bytes and advances by its length; 4 bytes of slack for the last.
            out = vec![0u8; ids.len() * max_len + 4];
            let mut j = 0usize;
            for (pos, &id) in ids.iter().enumerate() {
                let i = match id.to_id() {
                    Some(i) if (i as usize) < v => i as usize,
                    _ => return Err(bad(pos)),
                };
                out[j..j + 4].copy_from_slice(&self.utf8[i]);
                j += self.utf8_len[i] as usize;
            }
            out.truncate(j);
        }
        String::from_utf8(out)
            .map_err(|e| invalid!("internal error: decode produced invalid UTF-8: {e}"))
    }

    /// JSON form: `{"kind": "pyphase.CharTokenizer", "version": 1, "vocab": [...], "unk": null}`.
    pub fn to_json(&self) -> String {
        let vocab: Vec<serde_json::Value> = self
            .vocab
            .iter()
            .map(|c| serde_json::Value::String(c.to_string()))
            .collect();
        let obj = serde_json::json!({
            "kind": JSON_KIND,
            "version": JSON_VERSION,
            "vocab": vocab,
            "unk": self.unk().map(|c| c.to_string()),
        });
        serde_json::to_string(&obj).expect("a JSON value always serialises")
    }

    pub fn from_json(s: &str) -> CoreResult<Self> {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| invalid!("tokenizer JSON is malformed: {e}"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid!("tokenizer JSON must be an object"))?;
        match obj.get("kind").and_then(|k| k.as_str()) {
            Some(JSON_KIND) => {}
            other => {
                return Err(invalid!(
                    "tokenizer JSON has kind {other:?}, expected {JSON_KIND:?}"
                ))
            }
        }
        match obj.get("version").and_then(|k| k.as_u64()) {
            Some(JSON_VERSION) => {}
            other => {
                return Err(invalid!(
                    "tokenizer JSON has version {other:?}, expected {JSON_VERSION}"
                ))
            }
        }
        let list = obj.get("vocab").and_then(|x| x.as_array()).ok_or_else(|| {
            invalid!("tokenizer JSON needs a \"vocab\" list of one-character strings")
        })?;
        let mut vocab = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let s = item.as_str().ok_or_else(|| {
                invalid!("tokenizer JSON vocab entry {i} is not a string: {item}")
            })?;
            vocab.push(single_char(s, i)?);
        }
        let unk = match obj.get("unk") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(single_char(s, usize::MAX)?),
            Some(other) => {
                return Err(invalid!(
                    "tokenizer JSON \"unk\" must be a string or null, got {other}"
                ))
            }
        };
        Self::new(vocab, unk)
    }

    pub fn save(&self, path: &Path) -> CoreResult<()> {
        std::fs::write(path, self.to_json())
            .map_err(|e| CoreError::Io(format!("cannot write {}: {e}", path.display())))
    }

    pub fn load(path: &Path) -> CoreResult<Self> {
        let bytes = read_file(path)?;
        let s = check_utf8(&bytes).map_err(|e| invalid!("{}: {e}", path.display()))?;
        Self::from_json(s).map_err(|e| invalid!("{}: {e}", path.display()))
    }
}

/// The one character of `s`, or an error naming vocabulary entry `index` (`usize::MAX` = unk).
pub fn single_char(s: &str, index: usize) -> CoreResult<char> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ if index == usize::MAX => Err(invalid!("unk must be exactly one character, got {s:?}")),
        _ => Err(invalid!(
            "vocab entry {index} must be exactly one character, got {s:?}"
        )),
    }
}

// ------------------------------------------------------------------------------ n-gram entropies

/// Hasher for u64 keys: one SplitMix64 round (keys are already integers; SipHash is 5x slower).
#[derive(Default)]
struct MixHasher(u64);
impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = mix(k);
    }
}
type CountMap = HashMap<u64, u64, BuildHasherDefault<MixHasher>>;

/// Dense count tables up to this many cells; beyond, a hash map of the k-grams that occur.
const DENSE_COUNT_CELLS: u64 = 1 << 22;

/// Plug-in entropy (nats) of a distribution given by counts.
fn entropy<C: IntoIterator<Item = u64>>(counts: C) -> f64 {
    let (mut total, mut s) = (0u64, 0.0f64);
    for c in counts {
        if c > 0 {
            total += c;
            s += c as f64 * (c as f64).ln();
        }
    }
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    n.ln() - s / n
}

/// Counts of k-gram keys (`key = prefix * V + last`) and of their (k-1)-gram prefixes, over the
/// same `n - k + 1` windows; returns (H(k-gram), H(prefix)).
fn kgram_entropies(ids: &[u32], k: usize, v: u64) -> (f64, f64) {
    let cells = v.pow(k as u32);
    let keys = ids
        .windows(k)
        .map(|w| w.iter().fold(0u64, |acc, &t| acc * v + t as u64));
    if cells <= DENSE_COUNT_CELLS {
        let mut counts = vec![0u64; cells as usize];
        for key in keys {
            counts[key as usize] += 1;
        }
        let prefixes: Vec<u64> = counts.chunks(v as usize).map(|c| c.iter().sum()).collect();
        (entropy(counts), entropy(prefixes))
    } else {
        let mut counts = CountMap::default();
        for key in keys {
            *counts.entry(key).or_insert(0) += 1;
        }
        let mut prefixes = CountMap::default();
        for (&key, &c) in &counts {
            *prefixes.entry(key / v).or_insert(0) += c;
        }
        (
            entropy(counts.into_values()),
            entropy(prefixes.into_values()),
        )
    }
}

/// `[H(X_t), H(X_t | X_{t-1}), ..., H(X_t | X_{t-max_order+1..t-1})]` in nats per token:
/// plug-in estimates from counts; order k uses the `n - k + 1` windows of length k and is
/// H(k-gram) - H(its (k-1)-gram prefix) over those windows.
pub fn ngram_entropies<I: IdLike>(ids: &[I], max_order: usize) -> CoreResult<Vec<f64>> {
    if max_order == 0 {
        return Err(invalid!("max_order must be at least 1, got 0"));
    }
    if ids.len() < max_order {
        return Err(invalid!(
            "need at least {max_order} tokens for order-{max_order} statistics, got {}",
            ids.len()
        ));
    }
    let mut dense: Vec<u32> = Vec::with_capacity(ids.len());
    for (pos, &id) in ids.iter().enumerate() {
        match id.to_id() {
            Some(i) => dense.push(i),
            None => {
                return Err(invalid!(
                    "id {id} at position {pos} is not a token id (0 <= id < 2**32)"
                ))
            }
        }
    }
    let v = dense.iter().copied().max().unwrap_or(0) as u64 + 1;
    if v.checked_pow(max_order as u32).is_none() {
        return Err(invalid!(
            "max_order {max_order} is too high for ids up to {}: order-{max_order} keys exceed 64 bits",
            v - 1
        ));
    }
    let mut out = Vec::with_capacity(max_order);
    for k in 1..=max_order {
        let (hk, hprefix) = kgram_entropies(&dense, k, v);
        out.push(hk - hprefix);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids16(t: &CharTokenizer, s: &str) -> Vec<u16> {
        match t.encode(s, Unknown::Error).unwrap() {
            Ids::U16(v) => v,
            Ids::U32(_) => panic!("expected u16"),
        }
    }

    #[test]
    fn vocab_is_sorted_distinct_code_points() {
        let t = CharTokenizer::from_text("hello, wörld 🙂 wörld", None).unwrap();
        let v: String = t.vocab().iter().collect();
        assert_eq!(v, " ,dehlorwö🙂");
        assert_eq!(t.vocab_size(), 11);
        assert_eq!(t.dtype(), "uint16");
    }

    #[test]
    fn encode_decode_round_trip_ascii_and_not() {
        let text = "The quick brown fox — jumps over the lazy dog. Ünïcödé 🙂 ok\n".repeat(5);
        let t = CharTokenizer::from_text(&text, None).unwrap();
        let ids = ids16(&t, &text);
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(t.decode(&ids).unwrap(), text);
        for (id, c) in ids.iter().zip(text.chars()) {
            assert_eq!(t.vocab()[*id as usize], c);
        }
    }

    #[test]
    fn ascii_only_vocab_uses_fast_decode_and_round_trips() {
        let text = "abc def\nghi".repeat(40);
        let t = CharTokenizer::from_text(&text, None).unwrap();
        let ids = ids16(&t, &text);
        assert_eq!(t.decode(&ids).unwrap(), text);
        assert_eq!(
            ids[0],
            t.vocab().iter().position(|&c| c == 'a').unwrap() as u16
        );
    }

    #[test]
    fn unknown_char_error_names_char_code_and_offset() {
        let t = CharTokenizer::from_text("abc", None).unwrap();
        // Offsets inside and after a 16-byte ASCII chunk, and after a multi-byte char.
        let e = t
            .encode("abcabcabcabcabcabcaXc", Unknown::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'X' (U+0058) at byte offset 19"), "{e}");
        let e = t
            .encode("ab\u{e9}", Unknown::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'é' (U+00E9) at byte offset 2"), "{e}");
        let e = t
            .encode("a\u{1F642}b\u{e9}", Unknown::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+1F642") && e.contains("byte offset 1"), "{e}");
        let e = t.encode("a\nb", Unknown::Error).unwrap_err().to_string();
        assert!(e.contains("'\\n' (U+000A) at byte offset 1"), "{e}");
    }

    #[test]
    fn unk_mode_maps_unknown_chars_and_needs_an_unk() {
        let t = CharTokenizer::from_text("abc", Some('?')).unwrap();
        assert_eq!(t.vocab(), &['?', 'a', 'b', 'c']);
        let text = "abXcabcabcabcabcabcé🙂";
        let ids = ids16(&t.clone(), "abc");
        assert_eq!(ids, vec![1, 2, 3]);
        let Ids::U16(ids) = t.encode(text, Unknown::Unk).unwrap() else {
            panic!()
        };
        assert_eq!(t.decode(&ids).unwrap(), "ab?cabcabcabcabcabc??");
        let plain = CharTokenizer::from_text("abc", None).unwrap();
        let e = plain.encode("abX", Unknown::Unk).unwrap_err().to_string();
        assert!(e.contains("needs a tokenizer with an unk"), "{e}");
        assert!(Unknown::parse("skip")
            .unwrap_err()
            .to_string()
            .contains("\"skip\""));
    }

    #[test]
    fn explicit_vocab_keeps_order_and_appends_missing_unk() {
        let t = CharTokenizer::new(vec!['z', 'a'], Some('#')).unwrap();
        assert_eq!(t.vocab(), &['z', 'a', '#']);
        assert_eq!(ids16(&t, "az#"), vec![1, 0, 2]);
        assert_eq!(t.unk(), Some('#'));
        let e = CharTokenizer::new(vec!['a', 'b', 'a'], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'a' (U+0061) twice (ids 0 and 2)"), "{e}");
        let e = CharTokenizer::new(vec!['🙂', '🙂'], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        assert!(CharTokenizer::new(vec![], None)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(CharTokenizer::from_text("", None)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }

    #[test]
    fn invalid_utf8_names_byte_offset() {
        let e = CharTokenizer::from_bytes(b"abc\xffdef", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte offset 3") && e.contains("0xff"), "{e}");
        let t = CharTokenizer::from_text("abc", None).unwrap();
        let e = t
            .encode_bytes(b"ab\xe2\x82", Unknown::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte offset 2"), "{e}");
    }

    #[test]
    fn encode_into_checks_the_buffer_and_counts_chars() {
        let t = CharTokenizer::from_text("abcdefghijklmnopqrstuvwxyzé", None).unwrap();
        let text = "abcdefghijklmnopqrstuvwxyzé";
        let mut short = vec![0u16; 26];
        let e = t
            .encode_into(text, Unknown::Error, &mut short)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too short"), "{e}");
        let mut exact = vec![0u16; 27];
        assert_eq!(t.encode_into(text, Unknown::Error, &mut exact).unwrap(), 27);
        assert_eq!(exact, (0u16..27).collect::<Vec<_>>());
    }

    #[test]
    fn decode_table_path_round_trips_and_finds_bad_ids() {
        let text = "hello world, this is plain ASCII\n".repeat(1000);
        let t = CharTokenizer::from_text(&text, None).unwrap();
        let Ids::U16(mut ids) = t.encode(&text, Unknown::Error).unwrap() else {
            panic!()
        };
        assert!(ids.len() >= DECODE_TABLE_MIN_IDS);
        assert_eq!(t.decode(&ids).unwrap(), text);
        let v = t.vocab_size() as u16;
        ids[20_000] = v;
        ids[30_001] = u16::MAX;
        let e = t.decode(&ids).unwrap_err().to_string();
        assert!(e.contains(&format!("id {v} at position 20000")), "{e}");
    }

    #[test]
    fn decode_rejects_out_of_range_ids() {
        let t = CharTokenizer::from_text("abc", None).unwrap();
        let e = t.decode(&[0u16, 3]).unwrap_err().to_string();
        assert!(
            e.contains("id 3 at position 1") && e.contains("vocabulary of 3"),
            "{e}"
        );
        let e = t.decode(&[-1i64]).unwrap_err().to_string();
        assert!(e.contains("id -1 at position 0"), "{e}");
        let u = CharTokenizer::from_text("abé", None).unwrap();
        assert!(u.decode(&[9u32]).unwrap_err().to_string().contains("id 9"));
        assert_eq!(u.decode(&[2i64, 0]).unwrap(), "éa");
        assert_eq!(t.decode::<u16>(&[]).unwrap(), "");
    }

    #[test]
    fn large_vocab_switches_to_u32() {
        let chars: Vec<char> = (0x100u32..0x100 + 70_000)
            .filter_map(char::from_u32)
            .collect();
        assert!(chars.len() > U16_VOCAB_MAX);
        let t = CharTokenizer::new(chars.clone(), None).unwrap();
        assert_eq!(t.dtype(), "uint32");
        let s: String = chars[65_530..65_545].iter().collect();
        let Ids::U32(ids) = t.encode(&s, Unknown::Error).unwrap() else {
            panic!("expected u32")
        };
        assert_eq!(ids, (65_530u32..65_545).collect::<Vec<_>>());
        assert_eq!(t.decode(&ids).unwrap(), s);
        let exact = CharTokenizer::new(chars[..U16_VOCAB_MAX].to_vec(), None).unwrap();
        assert_eq!(exact.dtype(), "uint16");
    }

    #[test]
    fn json_round_trip_and_errors() {
        let t = CharTokenizer::from_text("a\"b\\c\n🙂", Some('\u{fffd}')).unwrap();
        let back = CharTokenizer::from_json(&t.to_json()).unwrap();
        assert_eq!(back.vocab(), t.vocab());
        assert_eq!(back.unk(), Some('\u{fffd}'));
        let cases = [
            ("{", "malformed"),
            ("[]", "must be an object"),
            (r#"{"kind":"x","version":1,"vocab":["a"]}"#, "kind"),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":2,"vocab":["a"]}"#,
                "version",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1}"#,
                "\"vocab\" list",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1,"vocab":["ab"]}"#,
                "entry 0 must be exactly one",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1,"vocab":[3]}"#,
                "entry 0 is not a string",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1,"vocab":["a"],"unk":5}"#,
                "\"unk\" must be",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1,"vocab":["a"],"unk":""}"#,
                "unk must be exactly one",
            ),
            (
                r#"{"kind":"pyphase.CharTokenizer","version":1,"vocab":["a","a"]}"#,
                "twice",
            ),
        ];
        for (s, needle) in cases {
            let e = CharTokenizer::from_json(s).unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn files_save_load_and_io_errors() {
        let dir = std::env::temp_dir().join(format!("pyphase-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let corpus = dir.join("c.txt");
        std::fs::write(&corpus, "hello\nworld").unwrap();
        let t = CharTokenizer::from_file(&corpus, None).unwrap();
        let Ids::U16(ids) = t.encode_file(&corpus, Unknown::Error).unwrap() else {
            panic!()
        };
        assert_eq!(t.decode(&ids).unwrap(), "hello\nworld");
        let vocab = dir.join("v.json");
        t.save(&vocab).unwrap();
        assert_eq!(CharTokenizer::load(&vocab).unwrap().vocab(), t.vocab());
        std::fs::write(&vocab, "not json").unwrap();
        let e = CharTokenizer::load(&vocab).unwrap_err();
        assert!(
            matches!(e, CoreError::Invalid(_)) && e.to_string().contains("v.json"),
            "{e}"
        );
        let missing = dir.join("missing.txt");
        assert!(
            matches!(CharTokenizer::from_file(&missing, None), Err(CoreError::Io(m)) if m.contains("missing.txt"))
        );
        assert!(matches!(
            t.encode_file(&missing, Unknown::Error),
            Err(CoreError::Io(_))
        ));
        assert!(matches!(
            t.save(&dir.join("no/such/dir.json")),
            Err(CoreError::Io(_))
        ));
        std::fs::write(&corpus, b"ok\xc3(").unwrap();
        let e = CharTokenizer::from_file(&corpus, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.txt") && e.contains("byte offset 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entropies_of_known_sequences() {
        // Period-2 sequence: one bit of unigram entropy, fully predictable after that.
        let ids: Vec<u16> = (0..1000).map(|i| (i % 2) as u16).collect();
        let h = ngram_entropies(&ids, 3).unwrap();
        assert!((h[0] - 2f64.ln()).abs() < 1e-12);
        assert!(h[1].abs() < 1e-12 && h[2].abs() < 1e-12);
        // Constant sequence: zero everywhere.
        assert_eq!(ngram_entropies(&[7u32; 10], 2).unwrap(), vec![0.0, 0.0]);
        // Uniform over 4 symbols in every order-2 context (de Bruijn-like cycle of all 16 pairs).
        let cycle: Vec<u16> = vec![0, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1, 3, 2, 2, 3, 3];
        let seq: Vec<u16> = cycle.iter().cycle().take(16 * 100 + 1).copied().collect();
        let h = ngram_entropies(&seq, 2).unwrap();
        assert!((h[0] - 4f64.ln()).abs() < 1e-3, "{h:?}");
        assert!((h[1] - 4f64.ln()).abs() < 1e-3, "{h:?}");
    }

    #[test]
    fn entropies_dense_and_hashed_counts_agree() {
        // Same sequence with ids spread out (forcing hash maps) must give identical entropies.
        let mut r = crate::rng::Xoshiro256pp::new(5);
        let small: Vec<u32> = (0..20_000).map(|_| r.below(30) as u32).collect();
        let spread: Vec<u32> = small.iter().map(|&i| i * 10_000).collect();
        let a = ngram_entropies(&small, 3).unwrap();
        let b = ngram_entropies(&spread, 3).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{a:?} {b:?}");
        }
        assert!(a[0] > a[1] && a[1] > a[2]);
    }

    #[test]
    fn entropies_errors() {
        assert!(ngram_entropies(&[1u16, 2], 0)
            .unwrap_err()
            .to_string()
            .contains("max_order"));
        assert!(ngram_entropies(&[1u16, 2], 3)
            .unwrap_err()
            .to_string()
            .contains("at least 3 tokens"));
        assert!(ngram_entropies(&[1i64, -2], 1)
            .unwrap_err()
            .to_string()
            .contains("id -2 at position 1"));
        let e = ngram_entropies(&[u32::MAX, 0], 2).unwrap_err().to_string();
        assert!(e.contains("too high"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_strings_round_trip(s in "\\PC*", extra in "\\PC{0,5}") {
            let t = CharTokenizer::from_text(&format!("{s}{extra}x"), None).unwrap();
            let ids = t.encode(&s, Unknown::Error).unwrap();
            let back = match ids {
                Ids::U16(v) => t.decode(&v).unwrap(),
                Ids::U32(v) => t.decode(&v).unwrap(),
            };
            prop_assert_eq!(back, s);
        }

        #[test]
        fn ascii_heavy_strings_round_trip_through_the_fast_path(s in "[a-z \\n]{0,200}(é|🙂)?[a-z]{0,40}") {
            let t = CharTokenizer::from_text(&format!("{s}q"), None).unwrap();
            let Ids::U16(ids) = t.encode(&s, Unknown::Error).unwrap() else { panic!() };
            prop_assert_eq!(ids.len(), s.chars().count());
            prop_assert_eq!(t.decode(&ids).unwrap(), s);
        }
    }
}
