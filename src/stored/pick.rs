//! Which image of an archive or layout holding several to read, as
//! dockerTools' `fromImageName` and `fromImageTag` pick.

/// Which image of an archive or layout holding several to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pick {
    /// The archive must hold exactly one image (`push`).
    #[default]
    Only,
    /// The first image, or the one whose tag is `name:tag` (either may be
    /// left out), as dockerTools' `fromImageName` and `fromImageTag` pick.
    Named {
        name: Option<String>,
        tag: Option<String>,
    },
}

impl Pick {
    /// Whether a `RepoTags` entry or OCI ref name (`name:tag`, or a tag
    /// alone) is the one asked for. A registry or `localhost/` prefix on
    /// the archive's side still matches (`podman save` writes them).
    pub(super) fn matches(&self, repo_tag: &str) -> bool {
        let Pick::Named { name, tag } = self else {
            return true;
        };
        let (have_name, have_tag) = match repo_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (repo_tag, "latest"),
        };
        let name_ok = name
            .as_deref()
            .is_none_or(|want| have_name == want || have_name.ends_with(&format!("/{want}")));
        let tag_ok = tag.as_deref().is_none_or(|want| have_tag == want);
        name_ok && tag_ok
    }

    pub(super) fn matches_tag(&self, tag: &str) -> bool {
        match self {
            Pick::Only => true,
            Pick::Named { tag: want, .. } => want.as_deref().is_none_or(|w| w == tag),
        }
    }

    pub(super) fn is_any(&self) -> bool {
        matches!(
            self,
            Pick::Named {
                name: None,
                tag: None
            }
        )
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Pick::Only => "the only image".into(),
            Pick::Named { name, tag } => format!(
                "{}:{}",
                name.as_deref().unwrap_or("*"),
                tag.as_deref().unwrap_or("*")
            ),
        }
    }
}
