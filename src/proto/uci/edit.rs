//! Changing one option of a UCI file while leaving every other byte as it
//! was, and checking that the result reads back as intended.
//!
//! Owns: [`set_option`]. Pure.

use super::scan::{Builder, Command, Kind, Scanner};
use super::{EditError, Section, SectionRef, Value, parse, quote, valid_name};

/// Sets `option` of `section` to `value` and returns the new text. The
/// option's last `option` line gets the new value in single quotes; if
/// the section has no such option, a line is added after the section's
/// last line. Every other byte of the file is left as it was. An empty
/// value writes `''`, which uci reads as "option absent". The result is
/// parsed back before it is returned; an edit that would not read back
/// exactly (e.g. a file ending in a lone backslash, which would swallow an
/// appended line) is refused with [`EditError::Verify`].
pub fn set_option(
    text: &str,
    section: &SectionRef,
    option: &str,
    value: &str,
) -> Result<String, EditError> {
    if !valid_name(option) {
        return Err(EditError::InvalidOptionName(option.into()));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(EditError::InvalidValue);
    }
    // uci names the package after its file; any valid name parses the same.
    let pkg = parse("p", text).map_err(EditError::Parse)?;
    let target = pkg
        .position(section)
        .ok_or_else(|| EditError::NoSuchSection(section.to_string()))?;

    // Second pass: find the commands of the target section.
    let mut scanner = Scanner::new(text).map_err(EditError::Parse)?;
    let mut builder = Builder::new("p");
    let mut last_of_option: Option<Command> = None;
    let mut last_in_section: Option<Command> = None;
    let mut indent_from: Option<usize> = None;
    let mut next_start: Option<usize> = None;
    while let Some(cmd) = scanner.next_command().map_err(EditError::Parse)? {
        let sec = builder.apply(&cmd).map_err(EditError::Parse)?;
        if last_in_section.is_some() && next_start.is_none() && sec != Some(target) {
            next_start = Some(cmd.start);
        }
        if sec != Some(target) {
            continue;
        }
        next_start = None;
        if matches!(cmd.kind, Kind::Option | Kind::List) {
            indent_from = Some(cmd.start);
            if cmd.args.first().is_some_and(|a| a.value == option) {
                last_of_option = Some(cmd.clone());
            }
        }
        last_in_section = Some(cmd);
    }

    let quoted = quote(value);
    let mut out = String::with_capacity(text.len() + quoted.len() + option.len() + 16);
    match last_of_option {
        Some(cmd) if cmd.kind == Kind::List => return Err(EditError::IsList(option.into())),
        Some(cmd) => match (cmd.args.get(1), cmd.args.first()) {
            (Some(v), _) if !v.span.is_empty() => {
                out.push_str(&text[..v.span.start]);
                out.push_str(&quoted);
                out.push_str(&text[v.span.end..]);
            }
            (_, Some(name)) => {
                out.push_str(&text[..name.span.end]);
                out.push(' ');
                out.push_str(&quoted);
                out.push_str(&text[name.span.end..]);
            }
            _ => return Err(EditError::Verify),
        },
        None => {
            let last = last_in_section.ok_or(EditError::Verify)?;
            let indent = indent_from.map_or("\t", |at| line_indent(text, at));
            let eol = text[last.end..].find('\n').map(|i| last.end + i);
            let shares_line = matches!((eol, next_start), (Some(e), Some(n)) if n < e)
                || (eol.is_none() && next_start.is_some());
            if shares_line {
                // Another command follows on the same line: chain ours with `;`.
                out.push_str(&text[..last.end]);
                out.push_str(&format!("; option {option} {quoted}"));
                out.push_str(&text[last.end..]);
            } else if let Some(e) = eol {
                let crlf = e > 0 && text.as_bytes().get(e - 1) == Some(&b'\r');
                let nl = if crlf { "\r\n" } else { "\n" };
                out.push_str(&text[..=e]);
                out.push_str(&format!("{indent}option {option} {quoted}{nl}"));
                out.push_str(&text[e + 1..]);
            } else {
                out.push_str(text);
                out.push_str(&format!("\n{indent}option {option} {quoted}"));
            }
        }
    }

    // Guard: the result must parse to the same package but for the one
    // option, which must hold exactly the value asked for. Checking the
    // option alone is not enough: an edit to "" is satisfied by any file
    // that lacks the option, even one whose other values it has changed.
    let check = parse("p", &out).map_err(|_| EditError::Verify)?;
    let others = |i: usize, s: &Section| -> Vec<(String, Value)> {
        let keep = |n: &String| i != target || n != option;
        s.options.iter().filter(|(n, _)| keep(n)).cloned().collect()
    };
    let unchanged = check.sections.len() == pkg.sections.len()
        && pkg
            .sections
            .iter()
            .zip(&check.sections)
            .enumerate()
            .all(|(i, (was, now))| {
                was.stype == now.stype && was.name == now.name && others(i, was) == others(i, now)
            });
    if !unchanged {
        return Err(EditError::Verify);
    }
    match check.sections.get(target).and_then(|s| s.get(option)) {
        Some(Value::Option(v)) if v == value => Ok(out),
        None if value.is_empty() => Ok(out),
        _ => Err(EditError::Verify),
    }
}

/// The leading blanks of the line holding byte `at`.
fn line_indent(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..at];
    let blank = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..blank]
}
