//! The background engine thread. It owns the `Pipeline` (loaded once, kept with its caches),
//! takes jobs over a crossbeam channel and reports progress per step. A newer render replaces
//! queued ones (live preview drops stale jobs); Cancel stops the running job at the next step;
//! a panic inside a job becomes a `Failed` event and the thread keeps serving.

use crate::export::RunLabel;
use crossbeam_channel::{unbounded, Receiver, Sender};
use image::RgbImage;
use skeleguide_engine::pipeline::{Layout, Pipeline, PipelineError, RunOptions};
use skeleguide_engine::pose::PoseSet;
use skeleguide_engine::sampling::Stage;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the worker is asked to do.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Stage 1 (+ the PoseInverter when the model has one).
    Reason,
    /// Stage 2 on `poses` (relayout through the rasteriser).
    Render { poses: PoseSet },
    /// Stage 1 then stage 2.
    Generate,
    /// A batch export into `out`.
    Batch {
        spec: crate::export::BatchSpec,
        out: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    pub model: PathBuf,
    pub scene: Arc<RgbImage>,
    pub prompt: String,
    pub opts: RunOptions,
    pub kind: JobKind,
}

/// What the worker reports.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        job: u64,
    },
    Progress {
        job: u64,
        stage: Stage,
        step: usize,
        total: usize,
    },
    /// A reasoned layout, with its poses when the model could invert it.
    Layout {
        job: u64,
        image: RgbImage,
        poses: Option<PoseSet>,
        note: Option<String>,
    },
    Image {
        job: u64,
        image: RgbImage,
        label: RunLabel,
    },
    Failed {
        job: u64,
        message: String,
    },
    Cancelled {
        job: u64,
    },
    BatchDone {
        job: u64,
        written: usize,
        skipped: usize,
        out: PathBuf,
    },
}

impl Event {
    pub fn job(&self) -> u64 {
        match self {
            Event::Started { job }
            | Event::Progress { job, .. }
            | Event::Layout { job, .. }
            | Event::Image { job, .. }
            | Event::Failed { job, .. }
            | Event::Cancelled { job }
            | Event::BatchDone { job, .. } => *job,
        }
    }
}

pub struct Worker {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    next_id: u64,
}

impl Worker {
    /// Starts the thread. `wake` is called after each event (the GUI requests a repaint).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Self {
        let (jtx, jrx) = unbounded::<Job>();
        let (etx, erx) = unbounded::<Event>();
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("skeleguide-engine".into())
            .spawn(move || serve(jrx, etx, c, wake))
            .expect("spawn the engine thread");
        Worker {
            jobs: jtx,
            events: erx,
            cancel,
            thread: Some(thread),
            next_id: 1,
        }
    }

    /// Queues a job and returns its id.
    pub fn submit(
        &mut self,
        model: PathBuf,
        scene: Arc<RgbImage>,
        prompt: String,
        opts: RunOptions,
        kind: JobKind,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let _ = self.jobs.send(Job {
            id,
            model,
            scene,
            prompt,
            opts,
            kind,
        });
        id
    }

    /// Stops the running job at its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Events since the last call.
    pub fn poll(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Blocks for the next event (tests).
    pub fn recv_timeout(&self, t: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(t).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.cancel();
        // closing the channel ends the thread after its current job
        let (dead, _) = unbounded();
        self.jobs = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    pipeline: Option<(PathBuf, Pipeline)>,
}

fn serve(jobs: Receiver<Job>, events: Sender<Event>, cancel: Arc<AtomicBool>, wake: impl Fn()) {
    let mut state = State { pipeline: None };
    let send = |e: Event| {
        let _ = events.send(e);
        wake();
    };
    while let Ok(mut job) = jobs.recv() {
        // live preview: a newer render of the same kind makes queued renders stale
        while let Ok(next) = jobs.try_recv() {
            if matches!(job.kind, JobKind::Render { .. })
                && matches!(next.kind, JobKind::Render { .. })
            {
                send(Event::Cancelled { job: job.id });
                job = next;
            } else {
                // keep order for different kinds: run this one, then the next
                run_one(&mut state, job, &cancel, &send);
                job = next;
            }
        }
        run_one(&mut state, job, &cancel, &send);
    }
}

fn run_one(state: &mut State, job: Job, cancel: &AtomicBool, send: &dyn Fn(Event)) {
    run_guarded(state, job, cancel, send, run_job)
}

/// What runs one job (the real [`run_job`], or a failing one in the tests).
type JobRunner = fn(&mut State, &Job, &AtomicBool, &dyn Fn(Event)) -> Result<(), PipelineError>;

/// The job through `runner`, with its panic or error turned into a `Failed` event.
fn run_guarded(
    state: &mut State,
    job: Job,
    cancel: &AtomicBool,
    send: &dyn Fn(Event),
    runner: JobRunner,
) {
    cancel.store(false, Ordering::Relaxed);
    let id = job.id;
    send(Event::Started { job: id });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner(state, &job, cancel, send)
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(PipelineError::Cancelled)) => send(Event::Cancelled { job: id }),
        Ok(Err(e)) => send(Event::Failed {
            job: id,
            message: e.to_string(),
        }),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            // the pipeline may be half-updated: reload it for the next job
            state.pipeline = None;
            send(Event::Failed {
                job: id,
                message: format!("internal error in the engine: {what}"),
            });
        }
    }
}

fn run_job(
    state: &mut State,
    job: &Job,
    cancel: &AtomicBool,
    send: &dyn Fn(Event),
) -> Result<(), PipelineError> {
    if state.pipeline.as_ref().is_none_or(|(d, _)| *d != job.model) {
        state.pipeline = None;
        let device = skeleguide_engine::pipeline::default_device()?;
        state.pipeline = Some((job.model.clone(), Pipeline::load(&job.model, &device)?));
    }
    let (_, p) = state.pipeline.as_mut().expect("loaded above");
    let id = job.id;
    let mut progress = |stage, step, total| {
        send(Event::Progress {
            job: id,
            stage,
            step,
            total,
        })
    };
    let scene = job.scene.as_ref();
    if let JobKind::Batch { spec, out } = &job.kind {
        let r = crate::export::run_batch(
            p,
            scene,
            spec,
            out,
            &mut |done, total| progress(Stage::Render, done, total),
            cancel,
        )?;
        send(Event::BatchDone {
            job: id,
            written: r.written,
            skipped: r.skipped,
            out: out.clone(),
        });
        return Ok(());
    }
    let layout: Layout = match &job.kind {
        JobKind::Render { poses } => p.relayout(scene, poses)?,
        JobKind::Reason | JobKind::Generate | JobKind::Batch { .. } => {
            let l = p.reason(scene, &job.prompt, &job.opts, &mut progress, cancel)?;
            let (poses, note) = match p.invert(&l) {
                Ok(ps) => (Some(ps), None),
                Err(e) => (None, Some(e.to_string())),
            };
            send(Event::Layout {
                job: id,
                image: l.image.clone(),
                poses,
                note,
            });
            l
        }
    };
    if matches!(job.kind, JobKind::Reason) {
        return Ok(());
    }
    let image = p.render(
        scene,
        &layout,
        &job.prompt,
        &job.opts,
        &mut progress,
        cancel,
    )?;
    send(Event::Image {
        job: id,
        image,
        label: RunLabel::of(
            p,
            &job.prompt,
            &job.opts,
            !matches!(job.kind, JobKind::Render { .. }),
        ),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn job(id: u64) -> Job {
        Job {
            id,
            model: PathBuf::from("unused"),
            scene: Arc::new(RgbImage::new(8, 8)),
            prompt: "a man".into(),
            opts: RunOptions::default(),
            kind: JobKind::Generate,
        }
    }

    fn panicking(
        _: &mut State,
        _: &Job,
        _: &AtomicBool,
        _: &dyn Fn(Event),
    ) -> Result<(), PipelineError> {
        panic!("injected failure")
    }

    fn fine(
        _: &mut State,
        _: &Job,
        _: &AtomicBool,
        _: &dyn Fn(Event),
    ) -> Result<(), PipelineError> {
        Ok(())
    }

    #[test]
    fn a_panicking_job_becomes_a_failed_event_and_the_next_job_runs() {
        let events = Mutex::new(Vec::new());
        let send = |e: Event| events.lock().unwrap().push(e);
        let mut state = State { pipeline: None };
        let cancel = AtomicBool::new(false);
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        run_guarded(&mut state, job(1), &cancel, &send, panicking);
        std::panic::set_hook(quiet);
        run_guarded(&mut state, job(2), &cancel, &send, fine);
        let events = events.into_inner().unwrap();
        assert!(matches!(events[0], Event::Started { job: 1 }));
        match &events[1] {
            Event::Failed { job: 1, message } => {
                assert!(message.contains("injected failure"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(events[2], Event::Started { job: 2 }));
        assert_eq!(events.len(), 3, "the second job ran and did not fail");
    }
}
