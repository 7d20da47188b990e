//! The registry side of a release, at the bottom of the publish: the OCI client
//! (`oci`), the typed OCI documents (`document`), where credentials come from
//! (`credentials`) and digests as registries spell them (`digest`). It imports nothing
//! else of xtask's and decides nothing: what to push, tag or move is `publish`'s.

pub(crate) mod credentials;
pub(crate) mod digest;
pub(crate) mod document;
pub(crate) mod oci;
