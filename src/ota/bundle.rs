//! Bundles: what an update is made of, how it is signed, and how it is read
//! back with every byte checked before anyone may write it to a disk.
//!
//! Layout:
//! ```text
//! "OBSBNDL1" | manifest length (u32 LE) | manifest (JSON) | ed25519 signature (64 bytes)
//! then, for each payload of the manifest, in order, for each group of 1024 blocks of 4 KiB:
//!   the SHA-256 of each block of the group (32 bytes each) | frame length (u32 LE) | zstd frame of the group
//! ```
//! The signature covers everything before it. The manifest names, for each
//! payload, the SHA-256 of each group's list of block hashes, so a group's
//! hashes are trusted as soon as they are read, and each block is checked as
//! soon as it is decompressed. A reader therefore never holds more than one
//! group (4 MiB), whatever the size of the image, and never needs a copy of
//! the bundle: an upload or a download is checked as it streams in.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"OBSBNDL1";
const FORMAT: u32 = 1;
pub const BLOCK_SIZE: usize = 4096;
const GROUP_BLOCKS: usize = 1024;
pub const GROUP_BYTES: usize = BLOCK_SIZE * GROUP_BLOCKS;
/// Room for the manifest of a payload of many terabytes; anything bigger is
/// not a bundle, and is not worth reading into memory to find out.
const MAX_MANIFEST: usize = 4 << 20;
const SIGNATURE_LEN: usize = 64;
const HASH_LEN: usize = 32;
/// The payloads a slot can take.
pub const PAYLOAD_NAMES: [&str; 2] = ["rootfs", "boot"];
/// The boards obsbox firmware is built for (the `board` of each image's
/// firmware.json): a bundle naming anything else could never install.
pub const BOARDS: [&str; 3] = ["x86_64", "rpi4", "rpi5"];

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the bundle: {0}")]
    Io(#[source] io::Error),
    #[error("this is not an obsbox bundle")]
    NotABundle,
    #[error("the bundle is truncated: it ends inside {0}")]
    Truncated(String),
    #[error("the signature does not match: the bundle was changed after it was signed, or it was signed by another key")]
    BadSignature,
    #[error("the manifest is invalid: {0}")]
    Manifest(String),
    #[error("the bundle is for {compatible}, not for this board ({board})")]
    Incompatible { board: String, compatible: String },
    #[error(
        "version {bundle} is older than the running {running}; force the install to downgrade"
    )]
    Older { bundle: String, running: String },
    #[error("version {bundle} is below this firmware's minimum {minimum} (it has a known flaw): it cannot be installed, even forced")]
    BelowMinimum { bundle: String, minimum: String },
    #[error("the bundle's payloads ({bundle}) do not match this board's slots ({slots})")]
    Payloads { bundle: String, slots: String },
    #[error("unknown board '{0}'; known: x86_64, rpi4, rpi5")]
    UnknownBoard(String),
    #[error("payload {payload} is corrupt: {detail}")]
    Corrupt { payload: String, detail: String },
    #[error("there are extra bytes after the last payload")]
    TrailingData,
    #[error("the rootfs's firmware.json says {found}, but the bundle is {expected}: build the image as the bundle's version and board")]
    RootfsMismatch { found: String, expected: String },
    #[error("cannot read /etc/obsbox/firmware.json from the rootfs {}: {detail}", path.display())]
    RootfsFirmware { path: PathBuf, detail: String },
    #[error("{0}")]
    Key(String),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the image {}: {source}", path.display())]
    Image { path: PathBuf, source: io::Error },
}

/// The signed description of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The firmware version, dotted numbers (`1.4.0`).
    pub version: String,
    /// Boards this firmware runs on (`x86_64`, `rpi4`, `rpi5`).
    pub compatible: Vec<String>,
    /// When the bundle was made, RFC 3339.
    pub created: String,
    pub payloads: Vec<Payload>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// `rootfs` or `boot`: which of a slot's partitions it is written to.
    pub name: String,
    /// Bytes of the payload in the bundle (hashes, lengths and frames).
    pub size: u64,
    /// SHA-256 of those bytes.
    pub sha256: String,
    /// Bytes of the image once written.
    pub image_size: u64,
    /// SHA-256 of the image, for reading the slot back.
    pub image_sha256: String,
    pub block_size: u32,
    pub group_blocks: u32,
    /// SHA-256 of each group's list of block hashes.
    pub groups: Vec<String>,
}

impl Payload {
    /// Bytes of the image in group `index`.
    fn group_len(&self, index: usize) -> usize {
        let start = index as u64 * GROUP_BYTES as u64;
        (self.image_size - start).min(GROUP_BYTES as u64) as usize
    }
}

/// A version as dotted numbers, compared number by number (`1.10` > `1.9`).
pub fn parse_version(text: &str) -> Option<Vec<u64>> {
    text.split('.')
        .map(|part| {
            let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| part.parse().ok()).flatten()
        })
        .collect()
}

impl Manifest {
    fn validate(&self) -> Result<(), BundleError> {
        let bad = |why: String| Err(BundleError::Manifest(why));
        if self.format != FORMAT {
            return bad(format!(
                "format {} is not one this obsbox reads ({FORMAT})",
                self.format
            ));
        }
        if parse_version(&self.version).is_none() {
            return bad(format!("version '{}' is not dotted numbers", self.version));
        }
        if self.compatible.is_empty() {
            return bad("it names no compatible board".into());
        }
        if !self.payloads.iter().any(|p| p.name == "rootfs") {
            return bad("it has no rootfs payload".into());
        }
        for (i, payload) in self.payloads.iter().enumerate() {
            let name = &payload.name;
            if !PAYLOAD_NAMES.contains(&name.as_str()) {
                return bad(format!("payload '{name}' is none of {PAYLOAD_NAMES:?}"));
            }
            if self.payloads[..i].iter().any(|p| &p.name == name) {
                return bad(format!("payload '{name}' appears twice"));
            }
            if payload.block_size as usize != BLOCK_SIZE
                || payload.group_blocks as usize != GROUP_BLOCKS
            {
                return bad(format!("payload '{name}' does not use blocks of {BLOCK_SIZE} bytes in groups of {GROUP_BLOCKS}"));
            }
            let groups = payload.image_size.div_ceil(GROUP_BYTES as u64);
            if payload.image_size == 0 || payload.groups.len() as u64 != groups {
                return bad(format!(
                    "payload '{name}' lists {} groups for an image of {} bytes",
                    payload.groups.len(),
                    payload.image_size
                ));
            }
            let hashes = payload
                .groups
                .iter()
                .chain([&payload.sha256, &payload.image_sha256]);
            if let Some(h) = hashes.into_iter().find(|h| parse_hash(h).is_none()) {
                return bad(format!(
                    "payload '{name}' has '{h}' where a SHA-256 belongs"
                ));
            }
        }
        Ok(())
    }

    /// Refuses a bundle for another board, whose payloads are not the
    /// slot's partitions, below the firmware's minimum version, or (unless
    /// `force`) older than the running one.
    pub fn check_fits(&self, fit: &Fit) -> Result<(), BundleError> {
        if !self.compatible.iter().any(|b| b == fit.board) {
            return Err(BundleError::Incompatible {
                board: fit.board.into(),
                compatible: self.compatible.join(", "),
            });
        }
        let mut names: Vec<&str> = self.payloads.iter().map(|p| p.name.as_str()).collect();
        let mut slots = fit.partitions.to_vec();
        names.sort_unstable();
        slots.sort_unstable();
        if names != slots {
            return Err(BundleError::Payloads {
                bundle: names.join(", "),
                slots: slots.join(", "),
            });
        }
        let version = parse_version(&self.version);
        if let Some(minimum) = fit.minimum {
            if version < parse_version(minimum) {
                return Err(BundleError::BelowMinimum {
                    bundle: self.version.clone(),
                    minimum: minimum.into(),
                });
            }
        }
        if version < parse_version(fit.running) && !fit.force {
            return Err(BundleError::Older {
                bundle: self.version.clone(),
                running: fit.running.into(),
            });
        }
        Ok(())
    }

    /// Bytes of the whole bundle.
    pub fn bundle_size(&self, header: u64) -> u64 {
        header + self.payloads.iter().map(|p| p.size).sum::<u64>()
    }
}

/// What a bundle must fit: the running firmware and the slot it goes to.
pub struct Fit<'a> {
    pub board: &'a str,
    pub running: &'a str,
    /// The lowest version this firmware accepts, even forced.
    pub minimum: Option<&'a str>,
    /// The target slot's partitions, by payload name.
    pub partitions: &'a [&'a str],
    /// Install an older version.
    pub force: bool,
}

/// Refuses a board name no obsbox firmware has.
pub fn check_board(name: &str) -> Result<(), BundleError> {
    if BOARDS.contains(&name) {
        Ok(())
    } else {
        Err(BundleError::UnknownBoard(name.into()))
    }
}

fn parse_hash(text: &str) -> Option<[u8; HASH_LEN]> {
    let mut out = [0; HASH_LEN];
    hex::decode_to_slice(text, &mut out).ok().map(|()| out)
}

/// ring's SHA-256: it uses the CPU's SHA extensions (five times the speed
/// of the sha2 crate here), and hashing every block is most of an install.
fn sha256(data: &[u8]) -> [u8; HASH_LEN] {
    let mut context = Context::new(&SHA256);
    context.update(data);
    finish(context)
}

fn finish(context: Context) -> [u8; HASH_LEN] {
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("a SHA-256 is 32 bytes")
}

/// Reads a key file: 64 hex digits (whitespace around them is ignored).
fn read_key(path: &Path, what: &str) -> Result<[u8; 32], BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError::Key(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut key = [0; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
        BundleError::Key(format!(
            "{} is not an ed25519 {what} (64 hex digits)",
            path.display()
        ))
    })?;
    Ok(key)
}

pub fn read_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    VerifyingKey::from_bytes(&read_key(path, "public key")?).map_err(|_| {
        BundleError::Key(format!(
            "{} is not a valid ed25519 public key",
            path.display()
        ))
    })
}

pub fn read_secret_key(path: &Path) -> Result<SigningKey, BundleError> {
    Ok(SigningKey::from_bytes(&read_key(path, "secret key")?))
}

/// Makes a key pair: the secret (readable by its owner only) and the public
/// key to ship in the image.
pub fn generate_keys(secret: &Path, public: &Path) -> Result<(), BundleError> {
    let mut seed = [0; 32];
    getrandom::getrandom(&mut seed).map_err(|e| BundleError::Key(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let write = |path: &Path, text: String, mode: u32| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| BundleError::Write {
                path: path.into(),
                source,
            })
    };
    write(secret, format!("{}\n", hex::encode(seed)), 0o600)?;
    write(
        public,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())),
        0o644,
    )
}

/// What goes into a new bundle.
pub struct Contents<'a> {
    pub version: &'a str,
    pub compatible: &'a [String],
    /// (payload name, image file)
    pub images: &'a [(&'a str, PathBuf)],
    /// zstd level
    pub level: i32,
}

/// Writes a bundle of `contents` signed with `key` to `output`. Each payload
/// is compressed to a temporary file beside `output` first: the manifest,
/// which comes first, needs the payloads' sizes and hashes.
pub fn create(
    contents: &Contents,
    key: &SigningKey,
    output: &Path,
) -> Result<Manifest, BundleError> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write_err = |source| BundleError::Write {
        path: output.into(),
        source,
    };
    for board in contents.compatible {
        check_board(board)?;
    }
    for (_, image) in contents.images.iter().filter(|(name, _)| *name == "rootfs") {
        if let Some(text) = rootfs_firmware(image)? {
            check_rootfs_firmware(&text, contents.version, contents.compatible)?;
        }
    }
    let mut payloads = Vec::new();
    let mut parts = Vec::new();
    for (name, image) in contents.images {
        let mut part = tempfile::tempfile_in(dir).map_err(write_err)?;
        payloads.push(pack(name, image, contents.level, &mut part)?);
        parts.push(part);
    }
    let manifest = Manifest {
        format: FORMAT,
        version: contents.version.into(),
        compatible: contents.compatible.to_vec(),
        created: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| String::new(), |t| t.to_string()),
        payloads,
    };
    manifest.validate()?;
    let json = serde_json::to_vec(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let mut signed = MAGIC.to_vec();
    signed.extend_from_slice(&(json.len() as u32).to_le_bytes());
    signed.extend_from_slice(&json);
    let signature = key.sign(&signed);
    let mut out = BufWriter::new(File::create(output).map_err(write_err)?);
    out.write_all(&signed).map_err(write_err)?;
    out.write_all(&signature.to_bytes()).map_err(write_err)?;
    for mut part in parts {
        part.rewind().map_err(write_err)?;
        io::copy(&mut part, &mut out).map_err(write_err)?;
    }
    out.into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .sync_all()
        .map_err(write_err)?;
    Ok(manifest)
}

/// What a rootfs's own firmware.json says it is.
#[derive(Deserialize)]
struct Stamp {
    board: String,
    version: String,
}

/// Checks that a rootfs's firmware.json (`text`) is `version` for one of the
/// `compatible` boards: a bundle labelled otherwise would pass the box's
/// version and board checks and then boot a firmware that reports, and
/// guards downgrades with, another version.
pub fn check_rootfs_firmware(
    text: &str,
    version: &str,
    compatible: &[String],
) -> Result<(), BundleError> {
    let stamp: Stamp = serde_json::from_str(text).map_err(|e| BundleError::RootfsFirmware {
        path: crate::ota::FIRMWARE_FILE.into(),
        detail: e.to_string(),
    })?;
    if stamp.version == version && compatible.contains(&stamp.board) {
        return Ok(());
    }
    Err(BundleError::RootfsMismatch {
        found: format!("version {} for {}", stamp.version, stamp.board),
        expected: format!("version {version} for {}", compatible.join(", ")),
    })
}

/// The firmware.json inside a rootfs image, read with e2fsprogs' debugfs;
/// `None` when the image is not an ext2/3/4 file system (every image this
/// project builds is ext4), so there is nothing this can read.
fn rootfs_firmware(image: &Path) -> Result<Option<String>, BundleError> {
    let fail = |detail: String| BundleError::RootfsFirmware {
        path: image.into(),
        detail,
    };
    // The ext2/3/4 superblock starts at byte 1024; its magic is at 56.
    let mut head = [0u8; 1082];
    let read = File::open(image).and_then(|mut f| read_full(&mut f, &mut head));
    match read {
        Ok(len) if len == head.len() && head[1080..] == [0x53, 0xef] => {}
        Ok(_) => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    }
    let command = format!("cat {}", crate::ota::FIRMWARE_FILE);
    // debugfs lives in sbin, which a user's PATH may lack.
    let out = ["debugfs", "/usr/sbin/debugfs", "/sbin/debugfs"]
        .iter()
        .map(|program| {
            std::process::Command::new(program)
                .args(["-R", &command])
                .arg(image)
                .output()
        })
        .find(|out| !matches!(out, Err(e) if e.kind() == io::ErrorKind::NotFound))
        .unwrap_or_else(|| Err(io::ErrorKind::NotFound.into()))
        .map_err(|e| fail(format!("debugfs (e2fsprogs): {e}")))?;
    // debugfs reports a missing file on stderr and still exits 0.
    if !out.status.success() || out.stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("no output");
        return Err(fail(last.trim().to_string()));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Compresses one image into `out` group by group and describes it.
fn pack(name: &str, image: &Path, level: i32, out: &mut File) -> Result<Payload, BundleError> {
    let read_err = |source| BundleError::Image {
        path: image.into(),
        source,
    };
    let write_err = |source| BundleError::Write {
        path: image.with_extension("part"),
        source,
    };
    let mut input = BufReader::new(File::open(image).map_err(read_err)?);
    let mut compressor = zstd::bulk::Compressor::new(level).map_err(read_err)?;
    let mut out = HashingWriter {
        inner: BufWriter::new(out),
        hash: Context::new(&SHA256),
        count: 0,
    };
    let mut image_hash = Context::new(&SHA256);
    let mut groups = Vec::new();
    let mut image_size = 0u64;
    let mut group = vec![0; GROUP_BYTES];
    loop {
        let len = read_full(&mut input, &mut group).map_err(read_err)?;
        if len == 0 {
            break;
        }
        let data = &group[..len];
        image_hash.update(data);
        image_size += len as u64;
        let hashes: Vec<u8> = data.chunks(BLOCK_SIZE).flat_map(sha256).collect();
        groups.push(hex::encode(sha256(&hashes)));
        let frame = compressor.compress(data).map_err(read_err)?;
        out.write_all(&hashes).map_err(write_err)?;
        out.write_all(&(frame.len() as u32).to_le_bytes())
            .map_err(write_err)?;
        out.write_all(&frame).map_err(write_err)?;
    }
    out.inner.flush().map_err(write_err)?;
    Ok(Payload {
        name: name.into(),
        size: out.count,
        sha256: hex::encode(finish(out.hash)),
        image_size,
        image_sha256: hex::encode(finish(image_hash)),
        block_size: BLOCK_SIZE as u32,
        group_blocks: GROUP_BLOCKS as u32,
        groups,
    })
}

struct HashingWriter<W> {
    inner: W,
    hash: Context,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A bundle whose signature checked out, positioned at its first payload.
pub struct Opened<R> {
    pub manifest: Manifest,
    /// The magic, manifest and signature, as read.
    header: Vec<u8>,
    input: R,
}

/// Reads and checks a bundle's header: magic, manifest and signature. Nothing
/// of the manifest is believed before the signature checks.
pub fn open<R: Read>(mut input: R, key: &VerifyingKey) -> Result<Opened<R>, BundleError> {
    let (signed, signature) = read_header(&mut input)?;
    key.verify(&signed, &Signature::from_bytes(&signature))
        .map_err(|_| BundleError::BadSignature)?;
    let manifest = parse_manifest(&signed)?;
    manifest.validate()?;
    let mut header = signed;
    header.extend_from_slice(&signature);
    Ok(Opened {
        manifest,
        header,
        input,
    })
}

/// The signed bytes (magic, length, manifest) and the signature.
fn read_header(input: &mut impl Read) -> Result<(Vec<u8>, [u8; SIGNATURE_LEN]), BundleError> {
    let mut signed = vec![0; MAGIC.len() + 4];
    exact(input, &mut signed, "the header")?;
    if &signed[..MAGIC.len()] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let len = u32::from_le_bytes(signed[MAGIC.len()..].try_into().expect("4 bytes")) as usize;
    if len > MAX_MANIFEST {
        return Err(BundleError::Manifest(format!(
            "it claims {len} bytes, more than the {MAX_MANIFEST} allowed"
        )));
    }
    let start = signed.len();
    signed.resize(start + len, 0);
    exact(input, &mut signed[start..], "the manifest")?;
    let mut signature = [0; SIGNATURE_LEN];
    exact(input, &mut signature, "the signature")?;
    Ok((signed, signature))
}

fn parse_manifest(signed: &[u8]) -> Result<Manifest, BundleError> {
    serde_json::from_slice(&signed[MAGIC.len() + 4..])
        .map_err(|e| BundleError::Manifest(e.to_string()))
}

fn exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BundleError> {
    match read_full(input, buf) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err(BundleError::Truncated(what.into())),
        Err(e) => Err(BundleError::Io(e)),
    }
}

/// Where checked image data goes.
pub trait Sink {
    /// `data` is group `index` of `payload`, every block of it checked; it
    /// belongs at byte `offset` of the image.
    fn group(&mut self, payload: &Payload, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Every group of `payload` was delivered and the payload's own hash checked.
    fn payload_done(&mut self, payload: &Payload) -> io::Result<()>;
}

/// Checks that nothing gets written.
pub struct Discard;

impl Sink for Discard {
    fn group(&mut self, _: &Payload, _: u64, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn payload_done(&mut self, _: &Payload) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The sink failed: the bundle was fine so far.
    #[error("{0}")]
    Sink(#[source] io::Error),
}

impl<R> Opened<R> {
    /// The bytes of the magic, manifest and signature.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Bytes of the whole bundle.
    pub fn bundle_size(&self) -> u64 {
        self.manifest.bundle_size(self.header.len() as u64)
    }

    /// The same bundle, read through `wrap(input)` from here on.
    pub fn map_input<S>(self, wrap: impl FnOnce(R) -> S) -> Opened<S> {
        Opened {
            manifest: self.manifest,
            header: self.header,
            input: wrap(self.input),
        }
    }
}

impl<R: Read> Opened<R> {
    /// Checks the rest of the bundle without unpacking it: each payload's
    /// bytes against its size and SHA-256 in the signed manifest, and
    /// nothing after the last. A bundle that passes is byte for byte the one
    /// that was signed, so unpacking it cannot fail on damage. Hashing is
    /// all it costs (no decompression).
    pub fn check(mut self) -> Result<(), BundleError> {
        let mut buf = vec![0; 1 << 20];
        for payload in &self.manifest.payloads {
            let mut hash = Context::new(&SHA256);
            let mut left = payload.size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                exact(
                    &mut self.input,
                    &mut buf[..want],
                    &format!("payload {}", payload.name),
                )?;
                hash.update(&buf[..want]);
                left -= want as u64;
            }
            if hex::encode(finish(hash)) != payload.sha256 {
                return Err(BundleError::Corrupt {
                    payload: payload.name.clone(),
                    detail: "its SHA-256 does not match the manifest".into(),
                });
            }
        }
        at_end(&mut self.input)
    }

    /// Reads every payload, checks every block before handing it to `sink`,
    /// and checks that the bundle ends where the manifest says.
    pub fn stream(mut self, sink: &mut impl Sink) -> Result<(), StreamError> {
        let mut decompressor = zstd::bulk::Decompressor::new().map_err(BundleError::Io)?;
        let mut hashes = vec![0; GROUP_BLOCKS * HASH_LEN];
        let mut frame = Vec::new();
        let largest = self
            .manifest
            .payloads
            .iter()
            .map(|p| p.group_len(0))
            .max()
            .unwrap_or(0);
        let mut data = vec![0; largest];
        let frame_limit = zstd::zstd_safe::compress_bound(GROUP_BYTES);
        for payload in &self.manifest.payloads {
            let corrupt = |detail: String| BundleError::Corrupt {
                payload: payload.name.clone(),
                detail,
            };
            let mut raw = HashingReader {
                inner: &mut self.input,
                hash: Context::new(&SHA256),
                count: 0,
            };
            for (index, group_hash) in payload.groups.iter().enumerate() {
                let where_ = || format!("group {index} of payload {}", payload.name);
                let len = payload.group_len(index);
                let blocks = len.div_ceil(BLOCK_SIZE);
                let hashes = &mut hashes[..blocks * HASH_LEN];
                exact(&mut raw, hashes, &where_())?;
                if hex::encode(sha256(hashes)) != *group_hash {
                    return Err(corrupt(format!(
                        "the block hashes of group {index} do not match the manifest"
                    ))
                    .into());
                }
                let mut frame_len = [0; 4];
                exact(&mut raw, &mut frame_len, &where_())?;
                let frame_len = u32::from_le_bytes(frame_len) as usize;
                if frame_len > frame_limit {
                    return Err(corrupt(format!(
                        "group {index} claims a frame of {frame_len} bytes"
                    ))
                    .into());
                }
                frame.resize(frame_len, 0);
                exact(&mut raw, &mut frame, &where_())?;
                let out = &mut data[..len];
                match decompressor.decompress_to_buffer(&frame, out) {
                    Ok(n) if n == len => {}
                    Ok(n) => {
                        return Err(
                            corrupt(format!("group {index} holds {n} bytes, not {len}")).into()
                        )
                    }
                    Err(e) => {
                        return Err(
                            corrupt(format!("group {index} does not decompress: {e}")).into()
                        )
                    }
                }
                for (block, (bytes, expected)) in out
                    .chunks(BLOCK_SIZE)
                    .zip(hashes.chunks(HASH_LEN))
                    .enumerate()
                {
                    if sha256(bytes) != expected {
                        let at = index as u64 * GROUP_BYTES as u64 + (block * BLOCK_SIZE) as u64;
                        return Err(corrupt(format!(
                            "the block at byte {at} does not match its hash"
                        ))
                        .into());
                    }
                }
                sink.group(payload, index as u64 * GROUP_BYTES as u64, out)
                    .map_err(StreamError::Sink)?;
            }
            if raw.count != payload.size || hex::encode(finish(raw.hash)) != payload.sha256 {
                return Err(
                    corrupt("its size or SHA-256 does not match the manifest".into()).into(),
                );
            }
            sink.payload_done(payload).map_err(StreamError::Sink)?;
        }
        Ok(at_end(&mut self.input)?)
    }
}

/// Refuses anything after the last payload.
fn at_end(input: &mut impl Read) -> Result<(), BundleError> {
    let mut extra = [0; 1];
    match read_full(input, &mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(BundleError::TrailingData),
        Err(e) => Err(BundleError::Io(e)),
    }
}

struct HashingReader<R> {
    inner: R,
    hash: Context,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Checks a whole bundle file: its signature and every block.
pub fn verify(path: &Path, key: &VerifyingKey) -> Result<Manifest, BundleError> {
    let file = File::open(path).map_err(BundleError::Io)?;
    let opened = open(BufReader::with_capacity(1 << 20, file), key)?;
    let manifest = opened.manifest.clone();
    match opened.stream(&mut Discard) {
        Ok(()) => Ok(manifest),
        Err(StreamError::Bundle(e)) => Err(e),
        Err(StreamError::Sink(e)) => Err(BundleError::Io(e)),
    }
}

/// The manifest of a bundle file, signature unchecked (for showing it).
pub fn inspect(path: &Path) -> Result<Manifest, BundleError> {
    let mut input = BufReader::new(File::open(path).map_err(BundleError::Io)?);
    parse_manifest(&read_header(&mut input)?.0)
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
