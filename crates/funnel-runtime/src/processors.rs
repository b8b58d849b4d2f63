//! Building the processors a pipeline file declares.
//!
//! Placement follows Conduit: a source's processors run first on its records, then the
//! pipeline's processors, then, per destination, that destination's processors, each
//! list in declared order. Funnel runs one worker per source, so each source gets its
//! own instances of the pipeline's and the destinations' processors; that is only
//! visible with stateful processors (a script keeping globals) and several sources.

use funnel_config::ProcessorConfig;
use funnel_core::{Parallel, Processor, Registry, SettingsError};

use crate::reference::plugin_name;

/// Builds `config`, found in `registry`, as one processor: `workers` instances (0 counts as 1) behind one
/// [`Parallel`], each applying the processor's `condition`. No I/O happens here.
///
/// # Errors
///
/// Every invalid setting; `plugin` when the plugin does not exist, `condition` when
/// the condition does not parse.
pub fn build(
    registry: &Registry,
    config: &ProcessorConfig,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let name = plugin_name(&config.plugin).map_err(|m| vec![SettingsError::new("plugin", m)])?;
    let condition = config.condition.as_deref();
    let workers = config.workers.max(1);
    let mut instances = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        let built = registry.processor(name, &config.id, &config.settings);
        instances.push(funnel_processors::with_condition(
            &config.id, built, condition,
        )?);
    }
    if instances.len() == 1 {
        Ok(instances.remove(0))
    } else {
        Ok(Box::new(Parallel::new(instances)))
    }
}
