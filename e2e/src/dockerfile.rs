//! The subset of Dockerfile syntax the image writer needs: the final stage's `FROM`, `ARG`,
//! `LABEL`, `COPY --from=`, `ENV`, `USER`, `ENTRYPOINT` and `CMD`, with `${VAR}` substitution.
//! The writer builds the image from what this reads, so the Dockerfile users build with docker
//! and the image CI builds without it cannot drift apart. Any other instruction in the final
//! stage is an error naming it: the writer would not know how to reproduce it.
use std::collections::BTreeMap;

/// A Dockerfile the writer cannot follow.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("the Dockerfile has no FROM")]
    NoStage,
    #[error(
        "line {line}: `{instruction}` in the final stage is not reproduced by the image writer (e2e/src/dockerfile.rs): teach the writer or move it to the build stage"
    )]
    Unsupported { line: usize, instruction: String },
}

/// `COPY --from=<stage> <sources...> <dest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub from: String,
    pub sources: Vec<String>,
    pub dest: String,
}

/// What the final stage of a Dockerfile makes: its base and the image config it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalStage {
    pub base: String,
    pub labels: BTreeMap<String, String>,
    pub copies: Vec<Copy>,
    /// `KEY=value`, in order (a later ENV of the same key replaces the earlier one).
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl FinalStage {
    /// The value of `ENV key`, if set.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An instruction after line continuations are joined: its 1-based first line, keyword
/// (upper case) and the rest.
struct Instruction {
    line: usize,
    keyword: String,
    rest: String,
}

/// Joins `\` continuations and drops comments and blank lines (parser directives included).
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (continued, body) = match trimmed.strip_suffix('\\') {
            Some(body) => (true, body),
            None => (false, trimmed),
        };
        let (start, mut joined) = current.take().unwrap_or((n + 1, String::new()));
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body.trim());
        if continued {
            current = Some((start, joined));
        } else if let Some((keyword, rest)) = split_keyword(&joined) {
            out.push(Instruction {
                line: start,
                keyword,
                rest,
            });
        }
    }
    if let Some((start, joined)) = current
        && let Some((keyword, rest)) = split_keyword(&joined)
    {
        out.push(Instruction {
            line: start,
            keyword,
            rest,
        });
    }
    out
}

fn split_keyword(joined: &str) -> Option<(String, String)> {
    let joined = joined.trim();
    if joined.is_empty() {
        return None;
    }
    let (keyword, rest) = joined
        .split_once(char::is_whitespace)
        .unwrap_or((joined, ""));
    Some((keyword.to_ascii_uppercase(), rest.trim().to_owned()))
}

/// Splits `a="b c" d=e` (or `a b c` words) into words, honouring double quotes and `\"`.
fn words(text: &str, line: usize) -> Result<Vec<String>, DockerfileError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(DockerfileError::Syntax {
            line,
            message: format!("unterminated quote in `{text}`"),
        });
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// `${NAME}`, `${NAME:-default}` and `$NAME` from `args` (unset: empty, or the default).
fn substitute(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
        {
            let expr = &braced[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (args.get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {}
            }
            rest = &braced[end + 1..];
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push('$');
        } else if let Some(v) = args.get(&after[..len]) {
            out.push_str(v);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// `KEY=value` pairs (LABEL, ENV, ARG with a default), values substituted.
fn pairs(
    rest: &str,
    line: usize,
    args: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, DockerfileError> {
    words(rest, line)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), substitute(v, args))),
            _ => Err(DockerfileError::Syntax {
                line,
                message: format!("expected KEY=value, found `{w}`"),
            }),
        })
        .collect()
}

/// The exec form `["a", "b"]`; the shell form is refused (the image has no shell).
fn exec_form(rest: &str, line: usize, keyword: &str) -> Result<Vec<String>, DockerfileError> {
    serde_json::from_str::<Vec<String>>(rest).map_err(|e| DockerfileError::Syntax {
        line,
        message: format!("{keyword} must be a JSON array (the image has no shell): {e}"),
    })
}

/// Reads the final stage of `text`. `build_args` override the stage's `ARG` defaults, as
/// `docker build --build-arg` does; `ARG`s declared before the first `FROM` only apply to `FROM`.
pub fn final_stage(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<FinalStage, DockerfileError> {
    let all = instructions(text);
    let last_from = all
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .ok_or(DockerfileError::NoStage)?;
    let global_args = global_args(&all, build_args)?;
    let from = &all[last_from];
    let base = words(&substitute(&from.rest, &global_args), from.line)?
        .into_iter()
        .next()
        .ok_or_else(|| DockerfileError::Syntax {
            line: from.line,
            message: "FROM without an image".into(),
        })?;
    let mut stage = FinalStage {
        base,
        ..FinalStage::default()
    };
    let mut args = BTreeMap::new();
    for i in &all[last_from + 1..] {
        apply(&mut stage, &mut args, build_args, i)?;
    }
    Ok(stage)
}

/// The `ARG`s before the first `FROM`, with `build_args` applied.
fn global_args(
    all: &[Instruction],
    build_args: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DockerfileError> {
    let mut args = BTreeMap::new();
    for i in all.iter().take_while(|i| i.keyword != "FROM") {
        if i.keyword == "ARG" {
            declare_arg(&mut args, build_args, i)?;
        }
    }
    Ok(args)
}

fn declare_arg(
    args: &mut BTreeMap<String, String>,
    build_args: &BTreeMap<String, String>,
    i: &Instruction,
) -> Result<(), DockerfileError> {
    for w in words(&i.rest, i.line)? {
        let (name, default) = match w.split_once('=') {
            Some((n, d)) => (n.to_owned(), substitute(d, args)),
            None => (w, String::new()),
        };
        let value = build_args.get(&name).cloned().unwrap_or(default);
        args.insert(name, value);
    }
    Ok(())
}

fn apply(
    stage: &mut FinalStage,
    args: &mut BTreeMap<String, String>,
    build_args: &BTreeMap<String, String>,
    i: &Instruction,
) -> Result<(), DockerfileError> {
    match i.keyword.as_str() {
        "ARG" => declare_arg(args, build_args, i)?,
        "LABEL" => stage.labels.extend(pairs(&i.rest, i.line, args)?),
        "ENV" => {
            for (k, v) in pairs(&i.rest, i.line, args)? {
                stage.env.retain(|(key, _)| *key != k);
                stage.env.push((k, v));
            }
        }
        "USER" => stage.user = Some(substitute(i.rest.trim(), args)),
        "ENTRYPOINT" => stage.entrypoint = exec_form(&i.rest, i.line, "ENTRYPOINT")?,
        "CMD" => stage.cmd = exec_form(&i.rest, i.line, "CMD")?,
        "COPY" => stage.copies.push(copy(&i.rest, i.line, args)?),
        other => {
            return Err(DockerfileError::Unsupported {
                line: i.line,
                instruction: other.to_owned(),
            });
        }
    }
    Ok(())
}

/// `COPY --from=<stage> src... dest`: only copies out of a build stage (the writer takes the
/// build's output directory instead of running the build).
fn copy(rest: &str, line: usize, args: &BTreeMap<String, String>) -> Result<Copy, DockerfileError> {
    let mut from = None;
    let mut paths = Vec::new();
    for w in words(&substitute(rest, args), line)? {
        match w.strip_prefix("--") {
            Some(flag) => match flag.split_once('=') {
                Some(("from", stage)) => from = Some(stage.to_owned()),
                _ => {
                    return Err(DockerfileError::Syntax {
                        line,
                        message: format!("COPY flag --{flag} is not supported by the writer"),
                    });
                }
            },
            None => paths.push(w),
        }
    }
    let from = from.ok_or_else(|| DockerfileError::Syntax {
        line,
        message: "COPY without --from: the writer only copies a build stage's output".into(),
    })?;
    let dest =
        paths
            .pop()
            .filter(|_| !paths.is_empty())
            .ok_or_else(|| DockerfileError::Syntax {
                line,
                message: "COPY needs at least one source and a destination".into(),
            })?;
    Ok(Copy {
        from,
        sources: paths,
        dest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=debian
FROM ${BASE}:12 AS build
RUN make \
 && make install
FROM gcr.io/distroless/cc-debian12
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL a.title="x y" \
      a.version="${VERSION}" a.rev=$REVISION
COPY --from=build /out/one /out/two /usr/bin/
ENV PATH=/usr/bin:/bin \
    MODE="a b"
ENV PATH=/usr/sbin:/usr/bin
USER 0:0
ENTRYPOINT ["/usr/bin/one"]
CMD ["--flag", "v"]
"#;

    #[test]
    fn reads_the_final_stage_with_args_and_continuations() {
        let stage = final_stage(SAMPLE, &BTreeMap::new()).unwrap();
        assert_eq!(stage.base, "gcr.io/distroless/cc-debian12");
        assert_eq!(stage.labels["a.title"], "x y");
        assert_eq!(stage.labels["a.version"], "0.1.0");
        assert_eq!(stage.labels["a.rev"], "unknown");
        assert_eq!(
            stage.copies,
            [Copy {
                from: "build".into(),
                sources: vec!["/out/one".into(), "/out/two".into()],
                dest: "/usr/bin/".into()
            }]
        );
        assert_eq!(stage.env_var("PATH"), Some("/usr/sbin:/usr/bin"));
        assert_eq!(stage.env_var("MODE"), Some("a b"));
        assert_eq!(stage.user.as_deref(), Some("0:0"));
        assert_eq!(stage.entrypoint, ["/usr/bin/one"]);
        assert_eq!(stage.cmd, ["--flag", "v"]);
    }

    #[test]
    fn build_args_override_defaults() {
        let args = BTreeMap::from([("VERSION".to_string(), "9.9.9".to_string())]);
        let stage = final_stage(SAMPLE, &args).unwrap();
        assert_eq!(stage.labels["a.version"], "9.9.9");
    }

    #[test]
    fn an_instruction_the_writer_cannot_reproduce_is_an_error_naming_it() {
        let text = "FROM scratch\nCOPY --from=b /x /y\nRUN echo hi\n";
        let err = final_stage(text, &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(&err, DockerfileError::Unsupported { line: 3, instruction } if instruction == "RUN"),
            "{err}"
        );
        let err = final_stage("FROM scratch\nCMD /bin/sh -c x\n", &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("JSON array"), "{err}");
        let err = final_stage("FROM scratch\nCOPY x /y\n", &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("--from"), "{err}");
    }

    #[test]
    fn substitution_forms() {
        let args = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(substitute("${A}-$A-${B:-d}-${B}-$", &args), "1-1-d--$");
    }
}
