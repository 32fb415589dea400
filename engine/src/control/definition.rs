//! Reading a pipeline definition sent to the API: one pipeline, named as
//! in the URL, whose uploaded modules exist — every problem with its
//! line, column and key.

use std::path::Path;

use super::modules::ModuleRegistry;
use super::supervisor::{ControlError, Supervisor};
use crate::config::{self, Diagnostic, Diagnostics, PipelineConfig, line_column};

type Result<T, E = ControlError> = std::result::Result<T, E>;

impl Supervisor {
    /// Parses an API pipeline's TOML: one pipeline named `name`, whose
    /// registry modules exist.
    pub(super) fn parse(&self, name: &str, toml: &str) -> Result<PipelineConfig> {
        let file = self.api_file(name);
        let mut configs = config::parse_str(&file, toml).map_err(ControlError::Invalid)?;
        let at = |line, column, key: &str, message: String| {
            ControlError::Invalid(Diagnostics(vec![Diagnostic {
                file: file.clone(),
                line,
                column,
                key: Some(key.to_string()),
                message,
            }]))
        };
        if configs.len() != 1 {
            return Err(at(
                1,
                1,
                "pipeline",
                format!("define exactly one pipeline here (found {})", configs.len()),
            ));
        }
        let config = configs.remove(0);
        if self.store.cluster().is_some() && !matches!(config.source, crate::sources::SourceConfig::Kafka(_))
        {
            let (line, column) = toml.find("[source]").map_or((1, 1), |at| line_column(toml, at));
            return Err(at(
                line,
                column,
                "source.type",
                "in cluster mode every engine runs every pipeline, so a pipeline reads Kafka, whose consumer \
                 group splits the partitions between the engines; a file or lake source would be read by every \
                 engine. Run such a pipeline on one engine started without --cluster"
                    .to_string(),
            ));
        }
        if config.name != name {
            let (line, column) = find_line_column(toml, "name");
            return Err(at(
                line,
                column,
                "name",
                format!("the pipeline is named `{}` but was sent to `{name}`", config.name),
            ));
        }
        for (index, stage) in config.stages.iter().enumerate() {
            let reference = stage.module.get_ref();
            if let Some((module, _)) = ModuleRegistry::parse_reference(reference)
                && self.modules.versions(module).is_empty()
                && !config.resolve(Path::new(reference)).exists()
            {
                let (line, column) = line_column(toml, stage.module.span().start);
                let uploaded: Vec<String> = self.modules.list().into_keys().collect();
                return Err(at(
                    line,
                    column,
                    &format!("stage[{index}].module"),
                    format!(
                        "no module named `{module}` is uploaded (uploaded: {})",
                        if uploaded.is_empty() { "none".to_string() } else { uploaded.join(", ") }
                    ),
                ));
            }
        }
        Ok(config)
    }
}

/// Where top-level `key = …` is, or 1:1.
fn find_line_column(text: &str, key: &str) -> (usize, usize) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(key) && trimmed[key.len()..].trim_start().starts_with('=') {
            return line_column(text, offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let text = "name = \"a\"\n[source]\n  type = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, text.find("type").unwrap()), (3, 3));
        assert_eq!(find_line_column(text, "name"), (1, 1));
        assert_eq!(find_line_column("# c\n name=1", "name"), (2, 2));
    }
}
