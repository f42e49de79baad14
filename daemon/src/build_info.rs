//! What `-version` prints, in upstream's shape (`pkg/multus/multus.go:PrintVersionString`):
//! `version:<v>(<tree state><release status>), commit:<sha>, date:<date>`. The image build sets
//! the parts upstream's `hack/build-go.sh` sets with `-ldflags -X`; a plain `cargo build` gets
//! upstream's own placeholders.

/// The crate version (upstream: the git tag).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `clean` or `dirty` (upstream: `git status --porcelain --untracked-files=no`), empty when unknown.
const GIT_TREE_STATE: &str = match option_env!("MULTUS_GIT_TREE_STATE") {
    Some(s) => s,
    None => "",
};
/// `,released` for a tagged or versioned build, as upstream.
const RELEASE_STATUS: &str = match option_env!("MULTUS_RELEASE_STATUS") {
    Some(s) => s,
    None => "",
};
const COMMIT: &str = match option_env!("MULTUS_GIT_COMMIT") {
    Some(s) => s,
    None => "unknown commit",
};
/// ISO-8601 UTC build time.
const DATE: &str = match option_env!("MULTUS_BUILD_DATE") {
    Some(s) => s,
    None => "unknown date",
};

/// Upstream's version string, without the `multus-daemon: ` prefix `main` adds.
pub fn version_string() -> String {
    format!("version:{VERSION}({GIT_TREE_STATE}{RELEASE_STATUS}), commit:{COMMIT}, date:{DATE}")
}

/// Upstream's daemon exits 4 after printing its version (`cmd/multus-daemon/main.go`).
pub const VERSION_EXIT_CODE: u8 = 4;
