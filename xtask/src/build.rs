//! Building the agent-runner image on this machine: the container engine through its
//! CLI (`engine`) and the image's platform-specific files prepared on the host
//! (`prepare`). It pushes and tags nothing: what leaves this machine goes through
//! `publish`.

pub(crate) mod engine;
pub(crate) mod prepare;
