//! The one precedence rule of every setting of `tapelog serve` and `tapelog forward`: a flag
//! wins over its environment variable, which wins over the TOML file (`--config`), which wins
//! over the default ([`Layer`] in that order). Each command keeps its own names (flags,
//! `TAPELOG_*` or `FDFWD_*`/`FDWRD_*` variables, TOML keys); this module only decides which
//! layer's value counts. A layer is asked only when every layer above it had nothing.

/// Where a setting's value came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The TOML configuration file.
    File,
    /// The built-in default.
    Default,
}

/// A setting's value and the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layered<T> {
    /// The value.
    pub value: T,
    /// Its layer.
    pub layer: Layer,
}

/// The value of the first layer that has one: `flag`, else `env()`, else `file()`. Layers
/// below the one that answered are not asked. (Where a parser such as clap already merges a
/// flag with its variable, pass the merged value as `flag` and `|| None` as `env`.)
pub fn pick<T>(
    flag: Option<T>,
    env: impl FnOnce() -> Option<T>,
    file: impl FnOnce() -> Option<T>,
) -> Option<Layered<T>> {
    let at = |layer| move |value| Layered { value, layer };
    flag.map(at(Layer::Flag))
        .or_else(|| env().map(at(Layer::Env)))
        .or_else(|| file().map(at(Layer::File)))
}

/// [`pick`], else `default` (from [`Layer::Default`]).
pub fn pick_or<T>(
    flag: Option<T>,
    env: impl FnOnce() -> Option<T>,
    file: impl FnOnce() -> Option<T>,
    default: impl FnOnce() -> T,
) -> Layered<T> {
    pick(flag, env, file).unwrap_or_else(|| Layered {
        value: default(),
        layer: Layer::Default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let v = |f: Option<String>, e: Option<String>, t: Option<String>| {
            let l = pick_or(f, || e, || t, || "default".to_string());
            (l.value, l.layer)
        };
        assert_eq!(
            v(some("f"), some("e"), some("t")),
            ("f".into(), Layer::Flag)
        );
        assert_eq!(v(None, some("e"), some("t")), ("e".into(), Layer::Env));
        assert_eq!(v(None, None, some("t")), ("t".into(), Layer::File));
        assert_eq!(v(None, None, None), ("default".into(), Layer::Default));
        assert!(
            Layer::Flag < Layer::Env && Layer::Env < Layer::File && Layer::File < Layer::Default
        );
    }

    #[test]
    fn lower_layers_are_not_asked_once_one_answers() {
        let l = pick(
            Some(1),
            || panic!("the environment was read"),
            || panic!("the file was read"),
        );
        assert_eq!(
            l,
            Some(Layered {
                value: 1,
                layer: Layer::Flag
            })
        );
        let l = pick(None, || Some(2), || panic!("the file was read"));
        assert_eq!(l.map(|l| l.layer), Some(Layer::Env));
        assert_eq!(pick::<u8>(None, || None, || None), None);
    }
}
