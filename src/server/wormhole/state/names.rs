//! Names in the mailbox state: free nameplates, mailbox ids, and the reference's word for
//! how a mailbox went.

use super::{Mailbox, MailboxError};

/// The reference's usage result for a mailbox that is gone.
pub(super) fn result(mailbox: &Mailbox, pruned: bool) -> &'static str {
    let moods: Vec<&str> = mailbox
        .sides
        .values()
        .filter_map(|(_, mood)| mood.as_deref())
        .collect();
    let mut result = match mailbox.sides.len() {
        0 => "quiet",
        1 => "lonely",
        _ => "happy",
    };
    for (mood, wins) in [
        ("lonely", "lonely"),
        ("errory", "errory"),
        ("scary", "scary"),
    ] {
        if moods.contains(&mood) {
            result = wins;
        }
    }
    if pruned {
        result = "pruney";
    }
    result
}

/// The shortest free nameplate: 1-9, then 10-99, then 100-999, each picked at random among
/// the free ones; then a random one below a million.
pub(super) fn free_nameplate(taken: impl Fn(&str) -> bool) -> Result<String, MailboxError> {
    let mut rng = crate::rng::Rng::new(random_u64());
    for digits in 1..4u32 {
        let (low, high) = (10u64.pow(digits - 1), 10u64.pow(digits));
        let free: Vec<u64> = (low..high).filter(|n| !taken(&n.to_string())).collect();
        if !free.is_empty() {
            let at = (rng.next_u64() % free.len() as u64) as usize;
            return Ok(free[at].to_string());
        }
    }
    for _ in 0..1000 {
        let n = 1000 + rng.next_u64() % 999_000;
        if !taken(&n.to_string()) {
            return Ok(n.to_string());
        }
    }
    Err(MailboxError::Full("unable to find a free nameplate".into()))
}

/// A nameplate is 1 to 40 digits.
pub(super) fn check_nameplate(name: &str) -> Result<(), MailboxError> {
    if name.is_empty() || name.len() > 40 || !name.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = name.chars().take(40).collect();
        return Err(MailboxError::BadNameplate(format!(
            "nameplate {shown:?} must be 1 to 40 digits"
        )));
    }
    Ok(())
}

pub(super) fn too_many(max: usize) -> MailboxError {
    MailboxError::Full(format!(
        "too many mailboxes open on this server (max {max}); try again later"
    ))
}

/// A new mailbox id: 64 random bits as 13 base-32 characters, as the reference's.
pub(super) fn mailbox_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = random_u64();
    (0..13)
        .map(|_| {
            let c = ALPHABET[(bits % 32) as usize] as char;
            bits /= 32;
            c
        })
        .collect()
}

/// 64 bits from the system's random source.
pub(super) fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    u64::from_le_bytes(bytes)
}
