//! A phone JPEG at 1/8 scale, its entropy-coded data decoded in two halves
//! at once.
//!
//! Decoded at 1/8, a 12 MP photo costs almost nothing but its entropy
//! decoding (~15 ms with libjpeg-turbo), and that is sequential by nature:
//! where a block starts is known only once every block before it is decoded.
//! Restart markers would give safe places to cut, but phone encoders seldom
//! write them. So the second half is decoded speculatively: a second thread
//! starts partway through the data as if an MCU started there, and notes
//! where each MCU it decodes starts. Huffman codes resynchronise within a few
//! symbols; once the first thread, decoding from the true start, reaches an
//! MCU start the second thread also noted, everything the second thread
//! decoded from there on is what the first would have decoded (a block's
//! bits depend only on where it starts). DC values are differences, so the
//! second half's are summed once the first half's predictors are known.
//!
//! Only what phones write is taken: one baseline Huffman scan of 8-bit
//! YCbCr, 4:2:0 or 4:4:4, all components interleaved, no restart markers.
//! Anything else, and anything wrong in the data (a code not in its table,
//! data ending early, bytes left after the last block), makes [`eighth`]
//! answer [`Outcome::Refused`] and the caller hands the photo to libjpeg-turbo, which
//! gives its own verdict: this decoder only ever takes a subset of what
//! libjpeg-turbo takes. Its pixels are libjpeg-turbo's 1/8 output bit for bit
//! on real photos (the 1x1 and 2x2 reduced inverse DCTs, their range limit,
//! the YCbCr conversion tables, as libjpeg-turbo's C code has them), which
//! `tests` and `models/tests/pipeline.rs` check. A corrupt scan whose
//! coefficients reach extremes no encoder writes can decode to other pixels
//! than libjpeg-turbo's SIMD code gives, though not than its C code (2 of
//! 379 corrupted scans taken, 0 with `JSIMD_FORCENONE=1`); what is taken,
//! libjpeg-turbo also takes. Safe Rust; the `jpeg` fuzz target holds it to
//! libjpeg-turbo's C code byte for byte (`fuzzing::jpeg`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arclock_secmem::{LockedBytes, LockedVec};

use crate::workspace::sized;

/// Zero bytes after the entropy-coded data: the most an MCU can read past the
/// data's end before the next bounds check (6 blocks of at most 64 codes of
/// 31 bits), plus one 8-byte load.
const PAD: usize = 2048;

/// MCU starts the speculating thread publishes for the first thread to meet.
const WINDOW: usize = 512;

/// How often the speculating thread starts afresh after decoding an invalid
/// code before it gives up (and the first thread decodes everything).
const RESTARTS: usize = 16;

/// Zig-zag order to natural order, with libjpeg's 16 extra entries: a run
/// that overflows the block writes its coefficient to position 63, as
/// libjpeg-turbo does, instead of failing.
const NATURAL: [u8; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// The rows and columns of a block the 2x2 reduced IDCT reads.
const ODD: [usize; 5] = [0, 1, 3, 5, 7];

/// Where a coefficient at zig-zag position `k` is kept for the 2x2 IDCT: its
/// slot (row index in `ODD` x 5 + column index), or slot 25, discarded.
const SLOT: [u8; 80] = {
    let mut slot = [25u8; 80];
    let mut k = 0;
    while k < 80 {
        let n = NATURAL[k] as usize;
        let (row, col) = (n / 8, n % 8);
        let (mut ri, mut ci) = (5, 5);
        let mut i = 0;
        while i < 5 {
            if ODD[i] == row {
                ri = i;
            }
            if ODD[i] == col {
                ci = i;
            }
            i += 1;
        }
        if ri < 5 && ci < 5 {
            slot[k] = (ri * 5 + ci) as u8;
        }
        k += 1;
    }
    slot
};

/// `i16`s a chroma block takes in a 4:2:0 record: its DC difference and the
/// 2x2 IDCT's 24 AC coefficients (slots 0..25, see `SLOT`), and slot 25.
const SLOTS: usize = 26;

/// Where a 4:2:0 record's Cb block starts (after the four luma DC
/// differences); Cr's follows it.
const CHROMA: usize = 4;

/// libjpeg-turbo's post-IDCT range limit, indexed by the value & 1023:
/// 0..127 is +128, then 255 up to 511, 0 up to 895, and the wrap back.
const LIMIT: [u8; 1024] = {
    let mut t = [0u8; 1024];
    let mut i = 0;
    while i < 1024 {
        t[i] = if i < 128 {
            (i + 128) as u8
        } else if i < 512 {
            255
        } else if i < 896 {
            0
        } else {
            (i - 896) as u8
        };
        i += 1;
    }
    t
};

/// libjpeg-turbo's YCbCr to RGB tables (jdcolor.c, 16 fractional bits).
struct Ycc {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

const YCC: Ycc = {
    // FIX(1.40200), FIX(1.77200), FIX(0.71414), FIX(0.34414); ONE_HALF.
    let (cr_r_k, cb_b_k, cr_g_k, cb_g_k, half) = (91881i32, 116130i32, 46802i32, 22554i32, 1 << 15);
    let mut t = Ycc {
        cr_r: [0; 256],
        cb_b: [0; 256],
        cr_g: [0; 256],
        cb_g: [0; 256],
    };
    let mut i = 0;
    while i < 256 {
        let x = i as i32 - 128;
        t.cr_r[i] = (cr_r_k * x + half) >> 16;
        t.cb_b[i] = (cb_b_k * x + half) >> 16;
        t.cr_g[i] = -cr_g_k * x;
        t.cb_g[i] = -cb_g_k * x + half;
        i += 1;
    }
    t
};

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[inline]
fn to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
    [
        clamp(y + YCC.cr_r[cr]),
        clamp(y + ((YCC.cb_g[cb] + YCC.cr_g[cr]) >> 16)),
        clamp(y + YCC.cb_b[cb]),
    ]
}

#[inline]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// Something this decoder does not take; the photo goes to libjpeg-turbo.
#[derive(Debug)]
struct Refused;

/// A Huffman table as libjpeg derives it: a lookup on the next `FAST` bits
/// for short codes, the canonical limits for the rest.
#[derive(Clone)]
struct Huffman {
    /// `length << 8 | symbol`, 0 when the code is longer than `FAST` bits.
    fast: Vec<u16>,
    /// Largest code of each length (-1: none), as in libjpeg's `maxcode`.
    maxcode: [i32; 17],
    /// Symbol index minus code, for each length.
    offset: [i32; 17],
    symbols: Vec<u8>,
    /// For an AC table: per `RUN`-bit prefix, `used | advance << 4 | eob << 11`
    /// (see [`Huffman::run`]); 0 when no whole code fits.
    runs: Vec<u16>,
}

const FAST: u32 = 10;

/// Bits of lookahead for skipping several AC codes at once (`Huffman::run`).
const RUN: u32 = 12;

impl Huffman {
    /// From a DHT's counts and symbols, refusing what libjpeg refuses (more
    /// than 256 symbols, a code that does not fit its length) and, for a DC
    /// table, a symbol above 15.
    fn new(counts: &[u8; 16], symbols: &[u8], dc: bool) -> Result<Self, Refused> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total != symbols.len() || total == 0 {
            return Err(Refused);
        }
        if dc && symbols.iter().any(|&s| s > 15) {
            return Err(Refused);
        }
        let mut fast = vec![0u16; 1 << FAST];
        let mut maxcode = [-1i32; 17];
        let mut offset = [0i32; 17];
        let (mut code, mut p) = (0u32, 0usize);
        for len in 1..=16usize {
            let n = usize::from(counts[len - 1]);
            if n > 0 {
                offset[len] = p as i32 - code as i32;
                for _ in 0..n {
                    // libjpeg refuses a table whose codes do not fit their
                    // length, the all-ones code included.
                    if code + 1 >= 1 << len {
                        return Err(Refused);
                    }
                    if len as u32 <= FAST {
                        let shift = FAST - len as u32;
                        let first = (code << shift) as usize;
                        let entry = (len as u16) << 8 | u16::from(symbols[p]);
                        fast[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    p += 1;
                }
                maxcode[len] = code as i32 - 1;
            }
            code <<= 1;
        }
        let table = Huffman {
            fast,
            maxcode,
            offset,
            symbols: symbols.to_vec(),
            runs: Vec::new(),
        };
        Ok(if dc { table } else { table.with_runs() })
    }

    /// Fills `runs`: for every `RUN`-bit prefix, the whole AC codes (with
    /// their value bits) it holds, as [`Huffman::run`] reads them.
    fn with_runs(mut self) -> Self {
        let mut runs = vec![0u16; 1 << RUN];
        for (prefix, entry) in runs.iter_mut().enumerate() {
            let (mut used, mut advance, mut eob) = (0u32, 0u32, false);
            'codes: while used < RUN {
                let left = RUN - used;
                for len in 1..=left {
                    let code = ((prefix as u32) >> (left - len)) & ((1 << len) - 1);
                    if code as i32 <= self.maxcode[len as usize] {
                        let Some(&rs) = self
                            .symbols
                            .get((code as i32 + self.offset[len as usize]) as usize)
                        else {
                            break 'codes;
                        };
                        let size = u32::from(rs & 15);
                        if len + size > left {
                            break 'codes;
                        }
                        used += len + size;
                        match rs {
                            0x00 => {
                                eob = true;
                                break 'codes;
                            }
                            0xF0 => advance += 16,
                            _ => advance += u32::from(rs >> 4) + 1,
                        }
                        if advance > 64 {
                            // Never usable (see `run`); keep what came before.
                            used = 0;
                        }
                        continue 'codes;
                    }
                }
                break;
            }
            if used > 0 && advance <= 64 {
                *entry = (used | advance << 4 | u32::from(eob) << 11) as u16;
            }
        }
        self.runs = runs;
        self
    }

    /// The AC codes at the top of `peek` skipped in one step, when they all
    /// fit in `RUN` bits and stay inside the block from coefficient `k`:
    /// the bits they take and the coefficient after them, `None` past an
    /// end of block.
    #[inline]
    fn run(&self, peek: u32, k: u32) -> Option<(u32, Option<u32>)> {
        let e = u32::from(self.runs[(peek >> (32 - RUN)) as usize]);
        let (used, advance, eob) = (e & 15, (e >> 4) & 127, e >> 11 != 0);
        if used == 0 {
            return None;
        }
        // Past coefficient 63 the block ends without an end-of-block code,
        // and the codes after belong to the next block.
        match eob {
            true if k + advance < 64 => Some((used, None)),
            false if k + advance <= 64 => Some((used, Some(k + advance))),
            _ => None,
        }
    }

    /// The code at the top of `peek` (32 bits from the read position):
    /// its length and symbol.
    #[inline]
    fn decode(&self, peek: u32) -> Result<(u32, u32), Refused> {
        let e = self.fast[(peek >> (32 - FAST)) as usize];
        if e != 0 {
            return Ok((u32::from(e >> 8), u32::from(e & 0xFF)));
        }
        for len in FAST as usize + 1..=16 {
            let code = (peek >> (32 - len)) as i32;
            if code <= self.maxcode[len] {
                let i = (code + self.offset[len]) as usize;
                return self
                    .symbols
                    .get(i)
                    .map(|&s| (len as u32, u32::from(s)))
                    .ok_or(Refused);
            }
        }
        Err(Refused)
    }
}

/// A read position in the unstuffed entropy-coded data (zero-padded by
/// `PAD` bytes), with the next bits kept in a register: reloaded only when
/// fewer than 32 are left, so a code costs one table lookup, not a load.
struct Bits<'a> {
    data: &'a [u8],
    /// Bits consumed from the start of `data`.
    pos: usize,
    /// The bits from `pos` on, left-aligned; `left` of them are valid.
    buf: u64,
    left: u32,
}

impl<'a> Bits<'a> {
    fn at(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            left: 0,
        }
    }

    /// The next 32 bits.
    #[inline]
    fn peek(&mut self) -> u32 {
        if self.left < 32 {
            let at = self.pos >> 3;
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.data[at..at + 8]);
            self.buf = u64::from_be_bytes(word) << (self.pos & 7);
            self.left = 64 - (self.pos & 7) as u32;
        }
        (self.buf >> 32) as u32
    }

    /// Consumes `n` (at most 31) of the bits `peek` gave.
    #[inline]
    fn skip(&mut self, n: u32) {
        self.buf <<= n;
        self.left -= n;
        self.pos += n as usize;
    }
}

/// A value of `size` bits (JPEG's sign convention) from the top of `bits`.
#[inline]
fn extend(bits: u32, size: u32) -> i32 {
    if size == 0 {
        return 0;
    }
    let v = (bits >> (32 - size)) as i32;
    if v < 1 << (size - 1) {
        v - (1 << size) + 1
    } else {
        v
    }
}

/// The DC difference of a block, its AC codes skipped (a 1x1 IDCT needs none).
#[inline]
fn dc_only(bits: &mut Bits<'_>, dc: &Huffman, ac: &Huffman) -> Result<i32, Refused> {
    let peek = bits.peek();
    let (len, size) = dc.decode(peek)?;
    let diff = extend(peek << len, size);
    bits.skip(len + size);
    let mut k = 1;
    while k < 64 {
        let peek = bits.peek();
        if let Some((used, next)) = ac.run(peek, k) {
            bits.skip(used);
            match next {
                Some(next) => {
                    k = next;
                    continue;
                }
                None => break,
            }
        }
        let (len, rs) = ac.decode(peek)?;
        let (run, size) = (rs >> 4, rs & 15);
        bits.skip(len + size);
        if size == 0 {
            if run != 15 {
                break;
            }
            k += 16;
        } else {
            k += run + 1;
        }
    }
    Ok(diff)
}

/// A block for the 2x2 IDCT: its DC difference in slot 0 and the AC
/// coefficients it reads in slots 1..25 (see `SLOT`); slot 25 is scratch.
#[inline]
fn reduced(
    bits: &mut Bits<'_>,
    dc: &Huffman,
    ac: &Huffman,
    out: &mut [i16; SLOTS],
) -> Result<(), Refused> {
    *out = [0; SLOTS];
    let peek = bits.peek();
    let (len, size) = dc.decode(peek)?;
    out[0] = extend(peek << len, size) as i16;
    bits.skip(len + size);
    let mut k = 1usize;
    while k < 64 {
        let peek = bits.peek();
        let (len, rs) = ac.decode(peek)?;
        let (run, size) = (rs >> 4, rs & 15);
        if size == 0 {
            bits.skip(len);
            if run != 15 {
                break;
            }
            k += 16;
        } else {
            k += run as usize;
            out[usize::from(SLOT[k])] = extend(peek << len, size) as i16;
            bits.skip(len + size);
            k += 1;
        }
    }
    Ok(())
}

/// libjpeg-turbo's `jpeg_idct_1x1`: a block's DC as one pixel.
#[inline]
fn idct1(coef: i16, q: i32) -> u8 {
    LIMIT[(descale(i64::from(i32::from(coef) * q), 3) & 1023) as usize]
}

/// libjpeg-turbo's `jpeg_idct_2x2` on a block's slots (DC already summed):
/// 2x2 pixels, row-major.
fn idct2(co: &[i16; SLOTS], q: &[i32; 25]) -> [u8; 4] {
    const C7: i64 = -5906; // -FIX(0.720959822)
    const C5: i64 = 6967; // FIX(0.850430095)
    const C3: i64 = -10426; // -FIX(1.272758580)
    const C1: i64 = 29692; // FIX(3.624509785)
    if co[1..25] == [0; 24] {
        // What both passes give when only the DC is set.
        let dc = i64::from((i32::from(co[0]) * q[0]) << 2);
        return [LIMIT[(descale(dc, 5) & 1023) as usize]; 4];
    }
    let at = |s: usize| i64::from(i32::from(co[s]) * q[s]);
    let mut ws = [[0i64; 5]; 2];
    for c in 0..5 {
        if co[5 + c] == 0 && co[10 + c] == 0 && co[15 + c] == 0 && co[20 + c] == 0 {
            let dc = i64::from((i32::from(co[c]) * q[c]) << 2);
            ws[0][c] = dc;
            ws[1][c] = dc;
            continue;
        }
        let tmp10 = at(c) << 15;
        let tmp0 = at(20 + c) * C7 + at(15 + c) * C5 + at(10 + c) * C3 + at(5 + c) * C1;
        ws[0][c] = i64::from(descale(tmp10 + tmp0, 13) as i32);
        ws[1][c] = i64::from(descale(tmp10 - tmp0, 13) as i32);
    }
    let mut out = [0u8; 4];
    for (r, w) in ws.iter().enumerate() {
        if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 {
            let v = LIMIT[(descale(w[0], 5) & 1023) as usize];
            out[r * 2] = v;
            out[r * 2 + 1] = v;
            continue;
        }
        let tmp10 = w[0] << 15;
        let tmp0 = w[4] * C7 + w[3] * C5 + w[2] * C3 + w[1] * C1;
        out[r * 2] = LIMIT[(descale(tmp10 + tmp0, 20) as i32 & 1023) as usize];
        out[r * 2 + 1] = LIMIT[(descale(tmp10 - tmp0, 20) as i32 & 1023) as usize];
    }
    out
}

/// The sampling phones use; anything else goes to libjpeg-turbo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Luma 2x2, chroma 1x1: four luma blocks and one of each chroma per MCU;
    /// at 1/8 the chroma blocks go through the 2x2 IDCT (no upsampling).
    Yuv420,
    /// One block of each per MCU, all three at 1x1.
    Yuv444,
}

impl Layout {
    /// `i16`s of one MCU's record (see `Scan::decode_mcu`).
    fn stride(self) -> usize {
        match self {
            Layout::Yuv420 => CHROMA + 2 * SLOTS,
            Layout::Yuv444 => 3,
        }
    }

    /// Output pixels per MCU along a side.
    fn side(self) -> usize {
        match self {
            Layout::Yuv420 => 2,
            Layout::Yuv444 => 1,
        }
    }
}

/// One scan, parsed and ready to decode.
struct Scan {
    layout: Layout,
    /// Output size (the photo's, /8 rounded up).
    width: usize,
    height: usize,
    mcus_x: usize,
    mcus: usize,
    /// DC and AC tables of Y, Cb, Cr.
    dc: [Huffman; 3],
    ac: [Huffman; 3],
    /// Y's DC quantiser; Cb's and Cr's at the 2x2 IDCT's slots (4:2:0) or
    /// their DC (4:4:4, slot 0).
    q_y: i32,
    q_c: [[i32; 25]; 2],
    /// Where the entropy-coded data starts and ends in the file.
    data: std::ops::Range<usize>,
}

/// A frame header (SOF0 or SOF1) of three components.
#[derive(Clone, Copy)]
struct Frame {
    width: usize,
    height: usize,
    comps: [Component; 3],
}

/// A frame component: its id (for the scan to name), sampling factors
/// (horizontal, vertical) and quantisation table.
#[derive(Clone, Copy, Default)]
struct Component {
    id: u8,
    sampling: (u8, u8),
    quant: usize,
}

fn be16(b: &[u8], at: usize) -> Result<usize, Refused> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(usize::from(hi) << 8 | usize::from(lo)),
        _ => Err(Refused),
    }
}

impl Scan {
    /// The markers up to the first scan, refusing whatever is not a baseline
    /// (or 8-bit extended) interleaved YCbCr 4:2:0 or 4:4:4 Huffman scan
    /// without restarts.
    fn parse(b: &[u8]) -> Result<Self, Refused> {
        if b.get(..2) != Some(&[0xFF, 0xD8]) {
            return Err(Refused);
        }
        let mut quant: [Option<[i32; 64]>; 4] = [None; 4];
        let mut dc: [Option<Huffman>; 4] = Default::default();
        let mut ac: [Option<Huffman>; 4] = Default::default();
        let mut frame: Option<Frame> = None;
        let mut at = 2;
        loop {
            if b.get(at) != Some(&0xFF) {
                return Err(Refused);
            }
            let marker = *b.get(at + 1).ok_or(Refused)?;
            if marker == 0xFF {
                at += 1; // fill byte
                continue;
            }
            let len = be16(b, at + 2)?;
            let seg = b.get(at + 4..at + 2 + len).ok_or(Refused)?;
            if len < 2 {
                return Err(Refused);
            }
            match marker {
                0xE0..=0xEF | 0xFE => {}
                0xDB => {
                    let mut s = seg;
                    while let Some((&pq_tq, rest)) = s.split_first() {
                        let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
                        let wide = match precision {
                            0 => false,
                            1 => true,
                            _ => return Err(Refused),
                        };
                        let n = if wide { 128 } else { 64 };
                        let (vals, rest) = rest.split_at_checked(n).ok_or(Refused)?;
                        let mut t = [0i32; 64];
                        for (k, slot) in NATURAL[..64].iter().enumerate() {
                            // libjpeg keeps the quantiser as a C short.
                            let v = if wide {
                                u16::from_be_bytes([vals[2 * k], vals[2 * k + 1]])
                            } else {
                                u16::from(vals[k])
                            };
                            t[usize::from(*slot)] = i32::from(v as i16);
                        }
                        *quant.get_mut(id).ok_or(Refused)? = Some(t);
                        s = rest;
                    }
                }
                0xC4 => {
                    let mut s = seg;
                    while let Some((&tc_th, rest)) = s.split_first() {
                        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
                        let (counts, rest) = rest.split_at_checked(16).ok_or(Refused)?;
                        let counts: [u8; 16] = counts.try_into().map_err(|_| Refused)?;
                        let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
                        let (symbols, rest) = rest.split_at_checked(n).ok_or(Refused)?;
                        let table = Huffman::new(&counts, symbols, class == 0)?;
                        match class {
                            0 => *dc.get_mut(id).ok_or(Refused)? = Some(table),
                            1 => *ac.get_mut(id).ok_or(Refused)? = Some(table),
                            _ => return Err(Refused),
                        }
                        s = rest;
                    }
                }
                0xDD => {
                    if be16(seg, 0)? != 0 {
                        return Err(Refused);
                    }
                }
                0xC0 | 0xC1 => {
                    if frame.is_some() || seg.len() != 6 + 3 * 3 || seg[0] != 8 || seg[5] != 3 {
                        return Err(Refused);
                    }
                    let (h, w) = (be16(seg, 1)?, be16(seg, 3)?);
                    if h == 0 || w == 0 {
                        return Err(Refused);
                    }
                    let mut comps = [Component::default(); 3];
                    for (i, c) in comps.iter_mut().enumerate() {
                        let f = &seg[6 + 3 * i..9 + 3 * i];
                        *c = Component {
                            id: f[0],
                            sampling: (f[1] >> 4, f[1] & 15),
                            quant: usize::from(f[2]),
                        };
                    }
                    frame = Some(Frame {
                        width: w,
                        height: h,
                        comps,
                    });
                }
                0xDA => {
                    let Frame {
                        width: w,
                        height: h,
                        comps,
                    } = frame.ok_or(Refused)?;
                    let layout = match comps.map(|c| c.sampling) {
                        [(2, 2), (1, 1), (1, 1)] => Layout::Yuv420,
                        [(1, 1), (1, 1), (1, 1)] => Layout::Yuv444,
                        _ => return Err(Refused),
                    };
                    if seg.len() != 1 + 3 * 2 + 3 || seg[0] != 3 || seg[7..10] != [0, 63, 0] {
                        return Err(Refused);
                    }
                    let mut tables = [(0usize, 0usize); 3];
                    for (i, t) in tables.iter_mut().enumerate() {
                        if seg[1 + 2 * i] != comps[i].id {
                            return Err(Refused);
                        }
                        let sel = seg[2 + 2 * i];
                        *t = (usize::from(sel >> 4), usize::from(sel & 15));
                    }
                    let pick = |set: &[Option<Huffman>; 4], id: usize| {
                        set.get(id).and_then(Option::as_ref).cloned().ok_or(Refused)
                    };
                    let dcs = [
                        pick(&dc, tables[0].0)?,
                        pick(&dc, tables[1].0)?,
                        pick(&dc, tables[2].0)?,
                    ];
                    let acs = [
                        pick(&ac, tables[0].1)?,
                        pick(&ac, tables[1].1)?,
                        pick(&ac, tables[2].1)?,
                    ];
                    let q = |i: usize| quant.get(comps[i].quant).copied().flatten().ok_or(Refused);
                    let (qy, qcb, qcr) = (q(0)?, q(1)?, q(2)?);
                    let at_slots = |t: [i32; 64]| {
                        let mut s = [0i32; 25];
                        for (ri, r) in ODD.iter().enumerate() {
                            for (ci, c) in ODD.iter().enumerate() {
                                s[ri * 5 + ci] = t[r * 8 + c];
                            }
                        }
                        s
                    };
                    let mcu = 8 * layout.side();
                    let start = at + 2 + len;
                    return Ok(Scan {
                        layout,
                        width: w.div_ceil(8),
                        height: h.div_ceil(8),
                        mcus_x: w.div_ceil(mcu),
                        mcus: w.div_ceil(mcu) * h.div_ceil(mcu),
                        dc: dcs,
                        ac: acs,
                        q_y: qy[0],
                        q_c: [at_slots(qcb), at_slots(qcr)],
                        data: start..entropy_end(b, start)?,
                    });
                }
                _ => return Err(Refused),
            }
            at += 2 + len;
        }
    }

    /// One MCU into `rec`: 4:2:0, four luma DC differences then Cb's and
    /// Cr's 26 slots; 4:4:4, the three DC differences.
    #[inline]
    fn decode_mcu(&self, bits: &mut Bits<'_>, rec: &mut [i16]) -> Result<(), Refused> {
        match self.layout {
            Layout::Yuv420 => {
                for y in rec.iter_mut().take(4) {
                    *y = dc_only(bits, &self.dc[0], &self.ac[0])? as i16;
                }
                let (chroma, _) = rec[CHROMA..].as_chunks_mut::<SLOTS>();
                for (c, block) in chroma.iter_mut().enumerate() {
                    reduced(bits, &self.dc[c + 1], &self.ac[c + 1], block)?;
                }
            }
            Layout::Yuv444 => {
                for (c, v) in rec.iter_mut().take(3).enumerate() {
                    *v = dc_only(bits, &self.dc[c], &self.ac[c])? as i16;
                }
            }
        }
        Ok(())
    }

    /// The DC predictors after `rec`, as `emit` would leave them.
    fn sum_dc(&self, rec: &[i16], preds: &mut [i32; 3]) {
        let add = |p: &mut i32, d: i16| *p = p.wrapping_add(i32::from(d));
        match self.layout {
            Layout::Yuv420 => {
                for &d in &rec[..4] {
                    add(&mut preds[0], d);
                }
                add(&mut preds[1], rec[CHROMA]);
                add(&mut preds[2], rec[CHROMA + SLOTS]);
            }
            Layout::Yuv444 => {
                for (p, &d) in preds.iter_mut().zip(&rec[..3]) {
                    add(p, d);
                }
            }
        }
    }

    /// MCU number `index`'s pixels from its record, the DC predictors
    /// (Y, Cb, Cr) carried along as libjpeg carries them (a wrapping
    /// `int`, stored in the block as a `short`).
    /// `out` starts at MCU row `row0`.
    fn emit(&self, rec: &[i16], preds: &mut [i32; 3], index: usize, out: &mut [u8], row0: usize) {
        let side = self.layout.side();
        let (my, mx) = (index / self.mcus_x, index % self.mcus_x);
        let (x0, y0) = (mx * side, my * side);
        // The pixels of this MCU inside the photo (fewer on its right and
        // bottom edges), and where its first row starts in `out`.
        let (w, h) = ((self.width - x0).min(side), (self.height - y0).min(side));
        let at = ((y0 - row0 * side) * self.width + x0) * 3;
        let stride = self.width * 3;
        let mut dc = |c: usize, diff: i16| {
            preds[c] = preds[c].wrapping_add(i32::from(diff));
            preds[c] as i16
        };
        match self.layout {
            Layout::Yuv420 => {
                let mut y = [0u8; 4];
                for (v, &diff) in y.iter_mut().zip(&rec[..4]) {
                    *v = idct1(dc(0, diff), self.q_y);
                }
                let mut chroma = [[0u8; 4]; 2];
                for (c, px) in chroma.iter_mut().enumerate() {
                    let mut block = [0i16; SLOTS];
                    block.copy_from_slice(&rec[CHROMA + SLOTS * c..CHROMA + SLOTS * (c + 1)]);
                    block[0] = dc(c + 1, block[0]);
                    *px = idct2(&block, &self.q_c[c]);
                }
                for dy in 0..h {
                    let row = &mut out[at + dy * stride..at + dy * stride + w * 3];
                    for (dx, px) in row.chunks_exact_mut(3).enumerate() {
                        let i = dy * 2 + dx;
                        px.copy_from_slice(&to_rgb(y[i], chroma[0][i], chroma[1][i]));
                    }
                }
            }
            Layout::Yuv444 => {
                let y = idct1(dc(0, rec[0]), self.q_y);
                let cb = idct1(dc(1, rec[1]), self.q_c[0][0]);
                let cr = idct1(dc(2, rec[2]), self.q_c[1][0]);
                out[at..at + 3].copy_from_slice(&to_rgb(y, cb, cr));
            }
        }
    }
}

/// Where the entropy-coded data from `start` ends: at the first marker,
/// which must be EOI (after fill bytes). A restart marker, another scan or
/// any other marker is refused.
fn entropy_end(b: &[u8], start: usize) -> Result<usize, Refused> {
    let mut from = start;
    while let Some(i) = memchr::memchr(0xFF, b.get(from..).ok_or(Refused)?) {
        let at = from + i;
        match b.get(at + 1) {
            Some(0x00) => from = at + 2,
            Some(_) => {
                let mut m = at + 1;
                while b.get(m) == Some(&0xFF) {
                    m += 1;
                }
                return if b.get(m) == Some(&0xD9) {
                    Ok(at)
                } else {
                    Err(Refused)
                };
            }
            None => return Err(Refused),
        }
    }
    Err(Refused)
}

/// `b`'s entropy-coded bytes without their stuffing (0xFF00 is 0xFF), then
/// `PAD` zero bytes, into `into`; the data's length in bits.
fn unstuff(b: &[u8], into: &mut LockedBytes) -> Result<usize, Refused> {
    let buf = sized(into, b.len() + PAD).map_err(|_| Refused)?;
    let (mut from, mut to) = (0, 0);
    for i in memchr::memchr_iter(0xFF, b) {
        let n = i + 1 - from;
        buf[to..to + n].copy_from_slice(&b[from..=i]);
        to += n;
        from = i + 2; // skip the stuffed 0x00 (entropy_end allowed no other)
    }
    let n = b.len().saturating_sub(from);
    buf[to..to + n].copy_from_slice(&b[from.min(b.len())..]);
    to += n;
    buf[to..].fill(0);
    Ok(to * 8)
}

/// What the first thread decoded: every MCU, or those before the one where
/// it met the second thread (`met`: that MCU and the second thread's record
/// of it).
struct First {
    preds: [i32; 3],
    met: Option<(usize, usize)>,
}

/// What the second thread decoded: its records, where each ends (in bits),
/// in `ends`.
#[derive(Default)]
struct Second {
    ends: Vec<usize>,
}

/// Where the two threads meet. The second thread may start late (an idle
/// thread takes a while to wake), so it starts partway between where the
/// first one is by then and the end: both halves take about as long.
#[derive(Default)]
struct Meeting {
    /// The first thread's read position (bits), updated every 64 MCUs.
    progress: AtomicUsize,
    /// The first `WINDOW` MCU starts the second thread decoded (empty: it
    /// started too late to help).
    window: OnceLock<Vec<usize>>,
    /// Set by the first thread when it decodes (or has decoded) alone.
    alone: AtomicBool,
}

impl Scan {
    /// From the true start: every MCU straight into `out`; with `meet`,
    /// stops at the first MCU start the second thread also noted.
    fn first(
        &self,
        data: &[u8],
        end: usize,
        out: &mut [u8],
        meet: Option<&Meeting>,
    ) -> Result<First, Refused> {
        let mut bits = Bits::at(data, 0);
        let mut preds = [0i32; 3];
        let mut rec = [0i16; CHROMA + 2 * SLOTS];
        let rec = &mut rec[..self.layout.stride()];
        let mut watch = meet;
        let mut next = 0usize;
        for index in 0..self.mcus {
            if bits.pos > end {
                return Err(Refused);
            }
            if let Some(meeting) = watch {
                if index % 64 == 0 {
                    meeting.progress.store(bits.pos, Ordering::Relaxed);
                }
                if let Some(window) = meeting.window.get()
                    && window.first().is_none_or(|&w| bits.pos >= w)
                {
                    while next < window.len() && window[next] < bits.pos {
                        next += 1;
                    }
                    if window.get(next) == Some(&bits.pos) {
                        return Ok(First {
                            preds,
                            met: Some((index, next)),
                        });
                    }
                    if next == window.len() {
                        meeting.alone.store(true, Ordering::Relaxed);
                        watch = None;
                    }
                }
            }
            self.decode_mcu(&mut bits, rec)?;
            self.emit(rec, &mut preds, index, out, 0);
        }
        if let Some(meeting) = meet {
            meeting.alone.store(true, Ordering::Relaxed);
        }
        finished(bits.pos, end)?;
        Ok(First { preds, met: None })
    }

    /// From 45 % of the way between the first thread's position and the
    /// end, as if an MCU started there: records into `records` until the data or the
    /// records run out, publishing the first `WINDOW` MCU starts to
    /// `meeting`. An invalid code before the window is published starts
    /// afresh where it was found.
    fn second(&self, data: &[u8], end: usize, records: &mut [i16], meeting: &Meeting) -> Second {
        let stride = self.layout.stride();
        let cap = records.len() / stride;
        let mut out = Second::default();
        let done = meeting.progress.load(Ordering::Relaxed);
        // Less than an eighth left: not worth meeting over.
        if meeting.alone.load(Ordering::Relaxed) || end.saturating_sub(done) < end / 8 {
            let _ = meeting.window.set(Vec::new());
            return out;
        }
        let mut window = Vec::with_capacity(WINDOW);
        // The first thread also makes its half's pixels (~20 % of its
        // work), the second only stores coefficients: 55 % of what is left
        // here evens them out on the textured phone photo of `make bench`.
        let mut start = done + (end - done) * 9 / 20;
        let mut published = false;
        let mut restarts = 0;
        'afresh: loop {
            let mut bits = Bits::at(data, start);
            out.ends.clear();
            window.clear();
            loop {
                let n = out.ends.len();
                if n == cap || bits.pos > end {
                    break 'afresh;
                }
                if published && n % 64 == 0 && meeting.alone.load(Ordering::Relaxed) {
                    break 'afresh;
                }
                let at = bits.pos;
                match self.decode_mcu(&mut bits, &mut records[n * stride..(n + 1) * stride]) {
                    Ok(()) => {
                        if !published {
                            window.push(at);
                            if window.len() == WINDOW {
                                let _ = meeting.window.set(std::mem::take(&mut window));
                                published = true;
                            }
                        }
                        out.ends.push(bits.pos);
                    }
                    Err(Refused) if !published && restarts < RESTARTS => {
                        restarts += 1;
                        start = bits.pos.max(at + 1);
                        continue 'afresh;
                    }
                    Err(Refused) => break 'afresh,
                }
            }
        }
        if !published {
            let _ = meeting.window.set(window);
        }
        out
    }
}

/// The last MCU must end inside the data's last byte (its padding bits):
/// libjpeg-turbo warns about data left over or missing.
fn finished(pos: usize, end: usize) -> Result<(), Refused> {
    if pos <= end && end - pos < 8 {
        Ok(())
    } else {
        Err(Refused)
    }
}

/// How [`eighth`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not taken (see the module's doc): `out` holds nothing of use.
    Refused,
    /// Decoded by one thread from start to end.
    Whole,
    /// Decoded in two halves that met at an MCU.
    Halves,
}

/// Decodes `bytes` at 1/8 into `out` (RGB, its sides the photo's / 8 rounded
/// up), splitting the entropy decoding over the current rayon pool's threads
/// when `split`. `data` and `records` are locked scratch (the unstuffed data,
/// the second half's coefficients), left for the caller to wipe.
pub(crate) fn eighth(
    bytes: &[u8],
    split: bool,
    data: &mut LockedBytes,
    records: &mut LockedVec<i16>,
    out: &mut [u8],
) -> Outcome {
    let Ok(scan) = Scan::parse(bytes) else {
        return Outcome::Refused;
    };
    if out.len() != scan.width * scan.height * 3 {
        return Outcome::Refused;
    }
    let Ok(end) = unstuff(&bytes[scan.data.clone()], data) else {
        return Outcome::Refused;
    };
    let data = &data[..];
    let whole = |out: &mut [u8]| match scan.first(data, end, out, None) {
        Ok(_) => Outcome::Whole,
        Err(Refused) => Outcome::Refused,
    };
    if !split || scan.mcus < 4 * WINDOW {
        return whole(out);
    }
    let stride = scan.layout.stride();
    let Ok(records) = sized(records, scan.mcus * stride) else {
        return whole(out);
    };
    let meeting = Meeting::default();
    let (first, second) = rayon::join(
        || scan.first(data, end, out, Some(&meeting)),
        || scan.second(data, end, records, &meeting),
    );
    let Ok(First { mut preds, met }) = first else {
        return Outcome::Refused;
    };
    let Some((index, local)) = met else {
        return Outcome::Whole;
    };
    let need = scan.mcus - index;
    match second.ends.get(local + need - 1) {
        Some(&last) if finished(last, end).is_ok() => {}
        _ => return Outcome::Refused,
    }
    // The second half's pixels, on both threads: from the first whole MCU
    // row at or after the middle of what is left on, the predictors are
    // the sums of the differences before it.
    let records = &records[local * stride..(local + need) * stride];
    let rows_from = (index + need / 2).div_ceil(scan.mcus_x) * scan.mcus_x;
    let split = rows_from.clamp(index, scan.mcus);
    let mut later = preds;
    for rec in records[..(split - index) * stride].chunks_exact(stride) {
        scan.sum_dc(rec, &mut later);
    }
    let row_bytes = scan.width * scan.layout.side() * 3;
    let (top, bottom) = out.split_at_mut((split / scan.mcus_x * row_bytes).min(out.len()));
    let (early, late) = records.split_at((split - index) * stride);
    rayon::join(
        || {
            for (i, rec) in early.chunks_exact(stride).enumerate() {
                scan.emit(rec, &mut preds, index + i, top, 0);
            }
        },
        || {
            for (i, rec) in late.chunks_exact(stride).enumerate() {
                scan.emit(rec, &mut later, split + i, bottom, split / scan.mcus_x);
            }
        },
    );
    Outcome::Halves
}

/// Ours against libjpeg-turbo, for the tests and the `jpeg` fuzz target: on
/// the heap, for public test photos and fuzz inputs only.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod compare {
    use super::*;

    /// `jpeg` decoded at 1/8 (`w` x `h`) by libjpeg-turbo, or its complaint.
    pub(crate) fn theirs(jpeg: &[u8], w: usize, h: usize) -> Result<Vec<u8>, turbojpeg::Error> {
        let mut px = vec![0u8; w * h * 3];
        turbojpeg::Decompressor::new()?.decompress(
            jpeg,
            turbojpeg::Image {
                pixels: px.as_mut_slice(),
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            },
        )?;
        Ok(px)
    }

    /// `jpeg` through [`eighth`] into `len` bytes of RGB (`Err`: no locked
    /// scratch).
    pub(crate) fn ours(
        jpeg: &[u8],
        split: bool,
        len: usize,
    ) -> Result<(Outcome, Vec<u8>), arclock_secmem::Error> {
        let mut data = LockedBytes::with_capacity(0)?;
        let mut records = LockedVec::with_capacity(0)?;
        let mut out = vec![0u8; len];
        let got = eighth(jpeg, split, &mut data, &mut records, &mut out);
        Ok((got, out))
    }
}

#[cfg(test)]
mod tests {
    use super::compare::{ours, theirs};
    use super::*;

    #[test]
    fn slots_cover_the_odd_rows_and_columns() {
        let kept = SLOT[..64].iter().filter(|&&s| s < 25).count();
        assert_eq!(kept, 25);
        assert_eq!(SLOT[0], 0);
        // Zig-zag 1 is natural 1 (row 0, column 1); 2 is natural 8 (row 1).
        assert_eq!((SLOT[1], SLOT[2]), (1, 5));
        // Overflowing runs land on natural 63, row 7 column 7: slot 24.
        assert_eq!(SLOT[70], 24);
    }

    #[test]
    fn range_limit_is_libjpegs() {
        assert_eq!(
            (LIMIT[0], LIMIT[127], LIMIT[128], LIMIT[511]),
            (128, 255, 255, 255)
        );
        assert_eq!(
            (LIMIT[512], LIMIT[895], LIMIT[896], LIMIT[1023]),
            (0, 0, 0, 127)
        );
    }

    #[test]
    fn a_table_whose_codes_overflow_is_refused() {
        // Three codes of length 1 cannot exist.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(Huffman::new(&counts, &[0, 1, 2], false).is_err());
        // Two codes of length 1 would use the all-ones code: libjpeg refuses.
        counts[0] = 2;
        assert!(Huffman::new(&counts, &[0, 1], false).is_err());
        counts[0] = 1;
        counts[1] = 1;
        let t = Huffman::new(&counts, &[7, 9], true).unwrap();
        assert_eq!(t.decode(0x0000_0000).unwrap(), (1, 7));
        assert_eq!(t.decode(0x8000_0000).unwrap(), (2, 9));
        assert!(t.decode(0xC000_0000).is_err());
    }

    fn faces() -> std::path::PathBuf {
        std::env::var_os("ARCLOCK_FACES_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces")
            })
    }

    /// A few real LFW photos (the first photo of every 40th person).
    fn photos() -> Vec<Vec<u8>> {
        let dir = faces().join("lfw-dev");
        let mut people: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        people.sort();
        people
            .iter()
            .step_by(40)
            .take(6)
            .map(|p| {
                let mut files: Vec<_> = std::fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                files.sort();
                std::fs::read(&files[0]).unwrap()
            })
            .collect()
    }

    fn encode(
        rgb: &[u8],
        w: usize,
        h: usize,
        quality: i32,
        subsamp: turbojpeg::Subsamp,
    ) -> Vec<u8> {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(quality);
        c.set_subsamp(subsamp);
        c.compress_to_vec(turbojpeg::Image {
            pixels: rgb,
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap()
    }

    /// libjpeg-turbo's own 1/8 decode, the reference.
    fn reference(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        let h = turbojpeg::Decompressor::new()
            .unwrap()
            .read_header(jpeg)
            .unwrap();
        let (w, ht) = (h.width.div_ceil(8), h.height.div_ceil(8));
        (w, ht, theirs(jpeg, w, ht).unwrap())
    }

    /// Phone-sized photos (4:2:0, the way `eval --phone` makes them) and
    /// odd-sized ones (partial MCUs on both edges) at several qualities and
    /// both samplings: the same pixels as libjpeg-turbo, whole or in halves,
    /// and the halves do meet.
    #[test]
    fn the_pixels_are_libjpeg_turbos_whole_and_in_halves() {
        use turbojpeg::Subsamp::{None as S444, Sub2x2 as S420};
        let mut halves = 0;
        for (i, photo) in photos().iter().enumerate() {
            let phone = crate::eval::phone_variant(photo).unwrap();
            let img = image::load_from_memory(photo).unwrap().to_rgb8();
            let odd = image::imageops::resize(
                &img,
                1001 + 16 * i as u32,
                757,
                image::imageops::FilterType::Triangle,
            );
            let (ow, oh) = (odd.width() as usize, odd.height() as usize);
            let quality = [50, 75, 92, 100][i % 4];
            let samp = if i % 2 == 0 { S420 } else { S444 };
            for jpeg in [phone, encode(odd.as_raw(), ow, oh, quality, samp)] {
                let (w, h, want) = reference(&jpeg);
                for split in [false, true] {
                    let (how, got) = ours(&jpeg, split, w * h * 3).unwrap();
                    assert_ne!(how, Outcome::Refused, "photo {i} ({w}x{h}) refused");
                    let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                    assert_eq!(
                        diff, 0,
                        "photo {i} ({w}x{h}, split {split}): {diff} bytes differ"
                    );
                    halves += usize::from(how == Outcome::Halves);
                }
            }
        }
        // Every phone photo is large enough to split; the halves met on all.
        assert!(halves >= 6, "the halves met on {halves} photos");
    }

    /// Broken data is never taken: libjpeg-turbo gets the photo and its verdict.
    #[test]
    fn broken_data_is_refused() {
        let phone = crate::eval::phone_variant(&photos()[0]).unwrap();
        let (w, h, _) = reference(&phone);
        let len = w * h * 3;
        // Cut in the middle of the scan (EOI kept, so only the data is short).
        let mut cut = phone[..phone.len() / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        // Bytes left after the last MCU.
        let mut long = phone[..phone.len() - 2].to_vec();
        long.extend_from_slice(&[0x12, 0x34, 0x56, 0xFF, 0xD9]);
        // A restart marker where none was announced.
        let mut rst = phone[..phone.len() - 2].to_vec();
        rst.extend_from_slice(&[0xFF, 0xD0, 0xFF, 0xD9]);
        for (name, jpeg) in [("cut", cut), ("long", long), ("rst", rst)] {
            for split in [false, true] {
                assert_eq!(
                    ours(&jpeg, split, len).unwrap().0,
                    Outcome::Refused,
                    "{name}, split {split}"
                );
            }
        }
    }

    /// An attacker's corrupted scans: each is refused (libjpeg-turbo then
    /// decides) or taken, and what is taken libjpeg-turbo also decodes
    /// without a warning, to the same pixels whole and in halves. Never a
    /// panic. The pixels are libjpeg-turbo's but for extreme coefficients,
    /// which only corrupt or hostile files have: of 600 corrupted scans, 379
    /// were taken and 2 of those decoded differently, none with
    /// libjpeg-turbo's SIMD code off (`JSIMD_FORCENONE=1`): ours follows
    /// its C code, which its SIMD code leaves at the extremes.
    #[test]
    fn a_corrupted_scan_is_refused_or_decoded_as_libjpeg_turbo_decodes_it() {
        let img = image::load_from_memory(&photos()[1]).unwrap().to_rgb8();
        let odd = image::imageops::resize(&img, 1001, 757, image::imageops::FilterType::Triangle);
        let jpeg = encode(odd.as_raw(), 1001, 757, 85, turbojpeg::Subsamp::Sub2x2);
        let scan = Scan::parse(&jpeg).unwrap().data;
        let (w, h, _) = reference(&jpeg);
        let (mut taken, mut refused, mut other) = (0, 0, 0);
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for _ in 0..150 {
            let mut bad = jpeg.clone();
            for _ in 0..1 + next() % 3 {
                let at = scan.start + next() as usize % scan.len();
                bad[at] ^= 1 << (next() % 8);
            }
            let (whole, pixels) = ours(&bad, false, w * h * 3).unwrap();
            let (halves, same) = ours(&bad, true, w * h * 3).unwrap();
            assert_eq!(whole == Outcome::Refused, halves == Outcome::Refused);
            if whole == Outcome::Refused {
                refused += 1;
                continue;
            }
            taken += 1;
            assert!(
                pixels == same,
                "the halves made other pixels than the whole"
            );
            let want = theirs(&bad, w, h);
            assert!(
                want.is_ok(),
                "taken, but libjpeg-turbo says {:?}",
                want.err()
            );
            other += usize::from(want.ok() != Some(pixels));
        }
        assert!(refused > 0 && taken > 0, "{taken} taken, {refused} refused");
        assert!(
            other * 20 <= taken,
            "{other} of {taken} taken decoded otherwise"
        );
    }

    #[test]
    fn unstuffing_drops_the_zero_after_each_ff() {
        let mut buf = LockedBytes::with_capacity(0).unwrap();
        let bits = unstuff(&[1, 0xFF, 0x00, 2, 0xFF, 0x00], &mut buf).unwrap();
        assert_eq!(bits, 32);
        assert_eq!(&buf[..4], &[1, 0xFF, 2, 0xFF]);
        assert!(buf[4..].iter().all(|&b| b == 0));
    }
}
