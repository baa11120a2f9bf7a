//! The payment channels' RSA keys (docs/payments.md, "Channels").
//!
//! Alipay and WeChat Pay sign their notifications with a private key that only
//! they hold; the merchant verifies with their public key. flashguard plays
//! both sides: the server verifies with `ALIPAY_PUBLIC_KEY` /
//! `WECHATPAY_PLATFORM_PUBLIC_KEY`, and the mock provider signs with
//! `MOCK_ALIPAY_PRIVATE_KEY` / `MOCK_WECHATPAY_PRIVATE_KEY`. A key is PEM text,
//! a path to a PEM file, or — public keys — bare Base64 DER as Alipay's tools
//! show it. A pair left unset is generated (RSA 2048, never a fixed default);
//! `main` keeps generated pairs under `data/` and uses them again at the next
//! start ([`KeyFiles`]). With only a public key, the mock cannot sign and
//! sends no notification of that channel.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{RsaPrivateKey, RsaPublicKey};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::configuration::ProviderSettings;

/// The size of a generated key: what both providers use.
const GENERATED_KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{name}: not a PEM key, a readable PEM file, or Base64 DER: {reason}")]
    Unreadable { name: &'static str, reason: String },
    #[error("{public} and {private} are not one key pair")]
    NotAPair {
        public: &'static str,
        private: &'static str,
    },
    #[error("WECHATPAY_APIV3_KEY must be 32 bytes (it is the AES-256 key), not {0}")]
    ApiV3KeyLength(usize),
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A channel's verifying key, and the mock's signing key when it has one.
/// Its `Debug` never shows the private key.
#[derive(Clone)]
pub struct KeyPair {
    pub public: RsaPublicKey,
    pub private: Option<RsaPrivateKey>,
    /// Generated at this start (no variable, no file).
    pub generated: bool,
}

/// Every key the channels need. Its `Debug` never shows a secret.
#[derive(Clone)]
pub struct ProviderKeys {
    pub alipay: KeyPair,
    pub wechatpay: KeyPair,
    /// The serial that names WeChat Pay's platform key (`Wechatpay-Serial`).
    pub wechatpay_serial: String,
    /// The APIv3 key: AES-256-GCM over WeChat Pay's resources.
    pub apiv3_key: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &serial_of(&self.public))
            .field("private", &self.private.as_ref().map(|_| "[redacted]"))
            .field("generated", &self.generated)
            .finish()
    }
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("alipay", &self.alipay)
            .field("wechatpay", &self.wechatpay)
            .field("wechatpay_serial", &self.wechatpay_serial)
            .field("apiv3_key", &"[redacted]")
            .finish()
    }
}

impl ProviderKeys {
    /// The keys of `settings`; a pair with neither key set is generated.
    pub fn resolve(settings: &ProviderSettings) -> Result<Self, KeyError> {
        let alipay = pair(
            ("ALIPAY_PUBLIC_KEY", &settings.alipay_public_key),
            ("MOCK_ALIPAY_PRIVATE_KEY", &settings.mock_alipay_private_key),
        )?;
        let wechatpay = pair(
            (
                "WECHATPAY_PLATFORM_PUBLIC_KEY",
                &settings.wechatpay_platform_public_key,
            ),
            (
                "MOCK_WECHATPAY_PRIVATE_KEY",
                &settings.mock_wechatpay_private_key,
            ),
        )?;
        let serial = match settings.wechatpay_platform_serial.trim() {
            "" => serial_of(&wechatpay.public),
            given => given.to_string(),
        };
        let apiv3 = settings.wechatpay_apiv3_key.expose_secret().as_bytes();
        let apiv3_key = apiv3
            .try_into()
            .map_err(|_| KeyError::ApiV3KeyLength(apiv3.len()))?;
        Ok(Self {
            alipay,
            wechatpay,
            wechatpay_serial: serial,
            apiv3_key,
        })
    }
}

/// A public key and the private key that belongs to it: given, derived or generated.
fn pair(
    (public_name, public): (&'static str, &str),
    (private_name, private): (&'static str, &SecretString),
) -> Result<KeyPair, KeyError> {
    let private = match private.expose_secret().trim() {
        "" => None,
        text => Some(read_private(private_name, text)?),
    };
    let public = match public.trim() {
        "" => None,
        text => Some(read_public(public_name, text)?),
    };
    match (public, private) {
        (Some(public), Some(private)) if RsaPublicKey::from(&private) != public => {
            Err(KeyError::NotAPair {
                public: public_name,
                private: private_name,
            })
        }
        (Some(public), private) => Ok(KeyPair {
            public,
            private,
            generated: false,
        }),
        (None, Some(private)) => Ok(KeyPair {
            public: RsaPublicKey::from(&private),
            private: Some(private),
            generated: false,
        }),
        (None, None) => generate(),
    }
}

/// A fresh pair from the operating system's generator.
pub fn generate() -> Result<KeyPair, KeyError> {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, GENERATED_KEY_BITS)
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    Ok(KeyPair {
        public: RsaPublicKey::from(&private),
        private: Some(private),
        generated: true,
    })
}

/// The PEM text of `text`: itself, or the file it names.
fn pem_or_file(name: &'static str, text: &str) -> Result<Option<String>, KeyError> {
    if text.contains("-----BEGIN") {
        return Ok(Some(text.to_string()));
    }
    let path = Path::new(text);
    if path.is_file() {
        return std::fs::read_to_string(path)
            .map(Some)
            .map_err(|error| KeyError::Unreadable {
                name,
                reason: format!("{}: {error}", path.display()),
            });
    }
    Ok(None)
}

fn read_public(name: &'static str, text: &str) -> Result<RsaPublicKey, KeyError> {
    let unreadable = |reason: String| KeyError::Unreadable { name, reason };
    match pem_or_file(name, text)? {
        Some(pem) => RsaPublicKey::from_public_key_pem(pem.trim())
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
            .map_err(|error| unreadable(error.to_string())),
        None => {
            let der = BASE64
                .decode(text.split_whitespace().collect::<String>())
                .map_err(|error| unreadable(error.to_string()))?;
            RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .map_err(|error| unreadable(error.to_string()))
        }
    }
}

fn read_private(name: &'static str, text: &str) -> Result<RsaPrivateKey, KeyError> {
    let unreadable = |reason: String| KeyError::Unreadable { name, reason };
    let pem = pem_or_file(name, text)?.ok_or_else(|| unreadable("no PEM text".into()))?;
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|error| unreadable(error.to_string()))
}

/// A serial for a platform key that has none: the first 20 bytes of the
/// SHA-256 of its DER, upper-case hex (WeChat Pay's serials are 40 hex digits).
fn serial_of(key: &RsaPublicKey) -> String {
    let der = key
        .to_public_key_der()
        .map(|der| der.as_bytes().to_vec())
        .unwrap_or_default();
    hex::encode_upper(&Sha256::digest(&der)[..20])
}

/// Where `main` keeps generated pairs, and takes them from at the next start.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    dir: PathBuf,
}

/// (channel, public variable, private variable) of each pair's files.
const FILES: [(&str, &str, &str); 2] = [
    ("alipay", "ALIPAY_PUBLIC_KEY", "MOCK_ALIPAY_PRIVATE_KEY"),
    (
        "wechatpay",
        "WECHATPAY_PLATFORM_PUBLIC_KEY",
        "MOCK_WECHATPAY_PRIVATE_KEY",
    ),
];

impl KeyFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn public_path(&self, channel: &str) -> PathBuf {
        self.dir.join(format!("{channel}-public.pem"))
    }

    fn private_path(&self, channel: &str) -> PathBuf {
        self.dir.join(format!("mock-{channel}-private.pem"))
    }

    /// A pair left unset whose files exist (an earlier start generated them)
    /// is taken from the files.
    pub fn fill_unset(&self, settings: &mut ProviderSettings) {
        for (channel, _, _) in FILES {
            let (public, private) = (self.public_path(channel), self.private_path(channel));
            if !public.is_file() || !private.is_file() {
                continue;
            }
            let (public_setting, private_setting) = match channel {
                "alipay" => (
                    &mut settings.alipay_public_key,
                    &mut settings.mock_alipay_private_key,
                ),
                _ => (
                    &mut settings.wechatpay_platform_public_key,
                    &mut settings.mock_wechatpay_private_key,
                ),
            };
            if public_setting.trim().is_empty() && private_setting.expose_secret().is_empty() {
                *public_setting = public.display().to_string();
                *private_setting = SecretString::from(private.display().to_string());
            }
        }
    }

    /// Writes every generated pair (the private key readable by the owner
    /// only); returns a line for the banner when there was any.
    pub fn write_generated(&self, keys: &ProviderKeys) -> Result<Option<String>, KeyError> {
        let mut written = Vec::new();
        for ((channel, public_var, private_var), pair) in
            FILES.iter().zip([&keys.alipay, &keys.wechatpay])
        {
            let Some(private) = pair.private.as_ref().filter(|_| pair.generated) else {
                continue;
            };
            self.write(&self.public_path(channel), &public_pem(&pair.public)?)?;
            self.write(&self.private_path(channel), &private_pem(private)?)?;
            written.push(format!("{public_var}/{private_var}"));
        }
        if written.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{} not set: RSA key pairs generated, see {}/*.pem (used again at the next start)",
            written.join(", "),
            self.dir.display()
        )))
    }

    fn write(&self, path: &Path, contents: &str) -> Result<(), KeyError> {
        let failed = |source| KeyError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(failed)?;
        crate::telemetry::write_private(path, contents).map_err(failed)
    }
}

fn public_pem(key: &RsaPublicKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|error| KeyError::Generate(error.to_string()))
}

fn private_pem(key: &RsaPrivateKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|error| KeyError::Generate(error.to_string()))
}

/// The PEM texts of a generated pair, for settings (tests share one pair).
pub fn pem_pair(pair: &KeyPair) -> Result<(String, String), KeyError> {
    let private = pair
        .private
        .as_ref()
        .ok_or_else(|| KeyError::Generate("a pair without its private key".into()))?;
    Ok((public_pem(&pair.public)?, private_pem(private)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_pem_base64_or_pkcs1_and_a_pair_must_match() {
        let pair = generate().expect("a key pair");
        let (public, private) = pem_pair(&pair).expect("PEM");
        let secret = SecretString::from(private.clone());
        let read = super::pair(("P", &public), ("Q", &secret)).expect("a pair");
        assert_eq!(read.public, pair.public);
        let bare: String = public
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert_eq!(read_public("P", &bare).expect("bare Base64"), pair.public);
        let derived = super::pair(("P", ""), ("Q", &secret)).expect("derived");
        assert_eq!(derived.public, pair.public);
        let other = generate().expect("another pair");
        let (other_public, _) = pem_pair(&other).expect("PEM");
        assert!(matches!(
            super::pair(("P", &other_public), ("Q", &secret)),
            Err(KeyError::NotAPair { .. })
        ));
        assert!(read_public("P", "not a key").is_err());
        assert_eq!(serial_of(&pair.public).len(), 40);
        let pkcs1 = pkcs1_pair(&pair);
        let read = super::pair(("P", &pkcs1.0), ("Q", &SecretString::from(pkcs1.1)))
            .expect("a PKCS#1 pair");
        assert_eq!(read.public, pair.public);
        assert!(format!("{read:?}").contains("[redacted]"));
    }

    /// The pair as `-----BEGIN RSA PUBLIC KEY-----` / `RSA PRIVATE KEY` PEM.
    fn pkcs1_pair(pair: &KeyPair) -> (String, String) {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
        let private = pair.private.as_ref().expect("a private key");
        (
            pair.public.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1"),
            private
                .to_pkcs1_pem(LineEnding::LF)
                .expect("PKCS#1")
                .to_string(),
        )
    }
}
