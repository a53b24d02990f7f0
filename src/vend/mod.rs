//! Vending credentials: the session policy, STS behind a trait, session names, the per-user
//! cache, and the output formats clients read.

pub mod format;
pub mod guard;
pub mod narrow;
pub mod policy;
pub mod presign;
pub mod scope;
pub mod session_name;
pub mod sts;
pub mod vendor;

/// BLAKE3 over length-prefixed fields, so that no two different lists of fields hash the same
/// input (the digests behind cache keys and scope hashes).
#[derive(Default)]
pub(crate) struct Fields(blake3::Hasher);

impl Fields {
    pub(crate) fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        self.0.finalize().into()
    }
}
