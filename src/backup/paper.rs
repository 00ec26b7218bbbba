//! A key to print and keep off the box: its text, to type back, and a QR
//! code of the same text, to scan back.
//!
//! For PBS it is laid out as `proxmox-backup-client key paperkey` lays out a
//! key file: the file's JSON, pretty-printed, between `-----BEGIN PROXMOX
//! BACKUP KEY-----` and `-----END PROXMOX BACKUP KEY-----`, and a QR code
//! (error correction M) of the JSON lines joined by newlines. The box draws
//! it itself rather than asking the client, whose paper key needs the
//! external `qrencode` program, which the box does not carry. For restic the
//! key a user must keep is the repository's password: the password is the
//! text and the QR code.

use qrcode::{EcLevel, QrCode};

const BEGIN: &str = "-----BEGIN PROXMOX BACKUP KEY-----";
const END: &str = "-----END PROXMOX BACKUP KEY-----";

/// A printable key.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperKey {
    /// What the key opens: the job and its repository.
    pub subject: String,
    /// What kind of key it is, as a heading.
    pub kind: &'static str,
    /// The text to print, line by line, as it is typed back.
    pub lines: Vec<String>,
    /// What the QR code holds.
    payload: String,
    /// How the key is used to restore without the box.
    pub restore: &'static str,
}

/// Said wherever a key is handed out.
pub const WARNING: &str = "This key lives only on the box. It is not on the backup server, and \
     not in the box's own state backup unless backups.state_includes_credentials is on. \
     Without it the backups cannot be restored if the box is lost; with it, anyone can \
     read them. Keep it somewhere safe, away from the box.";

impl PaperKey {
    /// A PBS key file (JSON, as `key create` writes it) on paper.
    pub fn pbs(subject: String, key_file: &[u8]) -> Result<PaperKey, String> {
        let key: serde_json::Value = serde_json::from_slice(key_file)
            .map_err(|e| format!("the key file is not JSON: {e}"))?;
        if !key.get("data").is_some_and(serde_json::Value::is_string) {
            return Err("the key file has no key data".into());
        }
        // The client writes its key files pretty-printed in its own field
        // order, which its paper key keeps: so does this one. A key file
        // uploaded on one line is spread over lines to be typeable.
        let text = String::from_utf8_lossy(key_file);
        let json = match text.trim().contains('\n') {
            true => text
                .trim()
                .lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n"),
            false => serde_json::to_string_pretty(&key).map_err(|e| e.to_string())?,
        };
        let lines = std::iter::once(BEGIN.to_string())
            .chain(json.lines().map(str::to_string))
            .chain(std::iter::once(END.to_string()))
            .collect();
        Ok(PaperKey {
            subject,
            kind: "PBS encryption key",
            lines,
            payload: json,
            restore: "Type or scan the lines between the BEGIN and END lines into a file, \
                      then: proxmox-backup-client restore ... --keyfile <that file> \
                      (with PBS_ENCRYPTION_PASSWORD set to its passphrase if it has one).",
        })
    }

    /// A restic repository's password (restic reads the first line of a
    /// password file) on paper.
    pub fn restic(subject: String, password_file: &[u8]) -> Result<PaperKey, String> {
        let text = String::from_utf8_lossy(password_file);
        let password = text.lines().next().unwrap_or_default().to_string();
        if password.is_empty() {
            return Err("the job has no password".into());
        }
        Ok(PaperKey {
            subject,
            kind: "restic repository password",
            lines: vec![password.clone()],
            payload: password,
            restore: "Give restic this password (RESTIC_PASSWORD, or a file named by \
                      RESTIC_PASSWORD_FILE) with the repository's location: restic \
                      snapshots, restic restore ...",
        })
    }

    fn qr(&self) -> Result<QrCode, String> {
        QrCode::with_error_correction_level(self.payload.as_bytes(), EcLevel::M)
            .map_err(|e| format!("cannot draw the QR code: {e}"))
    }

    /// The QR code as an SVG image.
    pub fn qr_svg(&self) -> Result<String, String> {
        Ok(self
            .qr()?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(300, 300)
            .build())
    }

    /// The whole paper key as text for a terminal or a text printer: as the
    /// client's `--output-format text`, the subject, the lines and the QR
    /// code in block characters (light on dark), then how to restore and
    /// the warning.
    pub fn text(&self) -> Result<String, String> {
        use qrcode::render::unicode::Dense1x2;
        let qr = self
            .qr()?
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build();
        Ok(format!(
            "Subject: {}\n\n{}\n{qr}\n\n{}\n{WARNING}\n",
            self.subject,
            self.lines.join("\n"),
            self.restore
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the client writes a key file: pretty, in its field order.
    const KEY: &str = "{\n  \"kdf\": null,\n  \"created\": \"2026-12-07T10:00:00+00:00\",\n  \
        \"modified\": \"2026-12-07T10:00:00+00:00\",\n  \"data\": \"c2VjcmV0\",\n  \
        \"fingerprint\": \"ab:cd\"\n}";

    #[test]
    fn a_pbs_key_is_printed_as_the_client_prints_it() {
        let paper = PaperKey::pbs("photos".into(), KEY.as_bytes()).unwrap();
        assert_eq!(paper.lines.first().map(String::as_str), Some(BEGIN));
        assert_eq!(paper.lines.last().map(String::as_str), Some(END));
        // Between the markers: the key file itself, pretty, in its own order.
        let inner = &paper.lines[1..paper.lines.len() - 1];
        assert_eq!(inner[0], "{");
        assert_eq!(inner[1], r#"  "kdf": null,"#);
        let typed_back: serde_json::Value = serde_json::from_str(&inner.join("\n")).unwrap();
        assert_eq!(
            typed_back,
            serde_json::from_str::<serde_json::Value>(KEY).unwrap()
        );
        // The QR code holds the same JSON lines, without the markers.
        assert_eq!(paper.payload, inner.join("\n"));
        let svg = paper.qr_svg().unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
        let text = paper.text().unwrap();
        assert!(text.starts_with("Subject: photos\n\n-----BEGIN"));
        assert!(text.contains('█') && text.contains(WARNING));
        // One line (uploaded so): spread over lines, the same JSON.
        let one_line: serde_json::Value = serde_json::from_str(KEY).unwrap();
        let spread = PaperKey::pbs("x".into(), one_line.to_string().as_bytes()).unwrap();
        assert!(spread.lines.len() > 5, "{:?}", spread.lines);
        let typed_back: serde_json::Value = serde_json::from_str(&spread.payload).unwrap();
        assert_eq!(typed_back, one_line);
        assert!(PaperKey::pbs("x".into(), b"not json").is_err());
        assert!(PaperKey::pbs("x".into(), br#"{"kdf":null}"#).is_err());
    }

    #[test]
    fn a_restic_password_is_its_first_line() {
        let paper = PaperKey::restic("box".into(), b"correct horse\n").unwrap();
        assert_eq!(paper.lines, ["correct horse"]);
        assert_eq!(paper.payload, "correct horse");
        assert!(PaperKey::restic("box".into(), b"").is_err());
        assert!(PaperKey::restic("box".into(), b"\nsecond").is_err());
    }
}
