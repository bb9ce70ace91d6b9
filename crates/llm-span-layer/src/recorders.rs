//! Which recorder the layer writes to, and the handles it registered with each.
//!
//! By default the layer writes to the recorder current at each call (a local
//! recorder, else the global one), keeping a separate [`RecorderHandles`] per recorder
//! so that a recorder installed after the layer gets handles of its own. Recorders are
//! told apart by address, at most [`MAX_RECORDERS`] of them.

use std::sync::{Arc, Mutex, OnceLock};

use metrics::Recorder;

use crate::series::{RecorderHandles, Series, SeriesConfig, SeriesRef};

/// How many distinct recorders one layer keeps handles for over its life.
const MAX_RECORDERS: usize = 8;

pub(crate) enum RecorderSource {
    /// Whatever `metrics::with_recorder` gives at the time: local, then global, then no-op.
    Current,
    /// A recorder handed to the layer.
    Fixed(Arc<dyn Recorder + Send + Sync>),
}

/// The handles of every recorder the layer has written to.
pub(crate) struct Recorders {
    source: RecorderSource,
    /// Boxed: each holds several tables, and the layer is moved around while it is built.
    handles: [OnceLock<Box<RecorderHandles>>; MAX_RECORDERS],
    /// Serializes creating the handles of a new recorder.
    creating: Mutex<()>,
}

impl Recorders {
    pub(crate) fn new(source: RecorderSource) -> Self {
        Self {
            source,
            handles: std::array::from_fn(|_| OnceLock::new()),
            creating: Mutex::new(()),
        }
    }

    pub(crate) fn is_fixed(&self) -> bool {
        matches!(self.source, RecorderSource::Fixed(_))
    }

    /// Runs `f` with the handles registered for the recorder in effect, creating them
    /// on first use. `None` only when more than [`MAX_RECORDERS`] recorders were seen.
    pub(crate) fn with_handles<R>(
        &self,
        config: &SeriesConfig,
        f: impl FnOnce(u8, &RecorderHandles, &dyn Recorder) -> R,
    ) -> Option<R> {
        match &self.source {
            RecorderSource::Fixed(recorder) => {
                let recorder: &dyn Recorder = &**recorder;
                let handles = self.handles[0]
                    .get_or_init(|| Box::new(RecorderHandles::new(0, recorder, config)));
                Some(f(0, handles, recorder))
            }
            RecorderSource::Current => metrics::with_recorder(|recorder| {
                let key = recorder as *const dyn Recorder as *const () as usize;
                let index = self.index_of(key, recorder, config)?;
                let handles = self.handles[index].get()?;
                Some(f(index as u8, handles, recorder))
            }),
        }
    }

    fn index_of(
        &self,
        key: usize,
        recorder: &dyn Recorder,
        config: &SeriesConfig,
    ) -> Option<usize> {
        for (index, slot) in self.handles.iter().enumerate() {
            match slot.get() {
                Some(handles) if handles.recorder_key() == key => return Some(index),
                Some(_) => continue,
                None => {
                    let _guard = self.creating.lock().unwrap_or_else(|p| p.into_inner());
                    let handles =
                        slot.get_or_init(|| Box::new(RecorderHandles::new(key, recorder, config)));
                    if handles.recorder_key() == key {
                        return Some(index);
                    }
                }
            }
        }
        None
    }

    /// The handles of a series bound earlier.
    pub(crate) fn series(&self, series: SeriesRef) -> Option<&Series> {
        self.handles
            .get(usize::from(series.recorder))?
            .get()?
            .series(series.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    /// The index and the recorder key of the handles `with_handles` gives under the recorder
    /// in effect.
    fn handles_of(recorders: &Recorders, config: &SeriesConfig) -> Option<(u8, usize)> {
        recorders.with_handles(config, |index, handles, _| (index, handles.recorder_key()))
    }

    #[test]
    fn each_recorder_keeps_its_own_handles_in_one_slot() {
        let config = SeriesConfig {
            extra_label_names: Vec::new(),
            max_series: 10,
            max_models: 10,
            max_gpus: 10,
            provider_label: None,
        };
        let recorders = Recorders::new(RecorderSource::Current);
        let (first, second) = (DebuggingRecorder::new(), DebuggingRecorder::new());
        let key = |recorder: &DebuggingRecorder| recorder as *const _ as *const () as usize;
        // Again and again, in turns: the first recorder's handles stay in slot 0, the
        // second's in slot 1, each the handles of its own recorder.
        for _ in 0..3 {
            for (recorder, index) in [(&first, 0), (&second, 1)] {
                let seen = metrics::with_local_recorder(recorder, || {
                    [(); 3].map(|()| handles_of(&recorders, &config))
                });
                assert_eq!(seen, [Some((index, key(recorder))); 3]);
            }
        }
    }
}
