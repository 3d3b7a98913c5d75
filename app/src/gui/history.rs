//! Undo/redo over the engine's pure edit operations: every entry holds the edit (or a whole
//! replacement, such as loading a file) and the pose set it produced.

use skeleguide_engine::pose::{Edit, EditError, PoseSet};

/// Entries kept; the oldest are dropped beyond this.
const MAX_ENTRIES: usize = 1000;

#[derive(Clone, Debug)]
pub enum Change {
    Start,
    Edit(Edit),
    Replace(String),
}

#[derive(Clone, Debug)]
struct Entry {
    change: Change,
    state: PoseSet,
}

#[derive(Clone, Debug)]
pub struct History {
    entries: Vec<Entry>,
    cursor: usize,
}

impl History {
    pub fn new(start: PoseSet) -> Self {
        History {
            entries: vec![Entry {
                change: Change::Start,
                state: start,
            }],
            cursor: 0,
        }
    }

    /// The current pose set.
    pub fn current(&self) -> &PoseSet {
        &self.entries[self.cursor].state
    }

    /// Applies an edit to the current state; redo entries beyond the cursor are dropped.
    pub fn apply(&mut self, edit: Edit) -> Result<(), EditError> {
        let next = edit.apply(self.current())?;
        self.push(Change::Edit(edit), next);
        Ok(())
    }

    /// Replaces the whole set (loading a file, fitting to a scene) as one undoable step.
    pub fn replace(&mut self, label: impl Into<String>, set: PoseSet) {
        self.push(Change::Replace(label.into()), set);
    }

    fn push(&mut self, change: Change, state: PoseSet) {
        self.entries.truncate(self.cursor + 1);
        self.entries.push(Entry { change, state });
        if self.entries.len() > MAX_ENTRIES {
            self.entries.remove(0);
        }
        self.cursor = self.entries.len() - 1;
    }

    pub fn can_undo(&self) -> bool {
        self.cursor > 0
    }

    pub fn can_redo(&self) -> bool {
        self.cursor + 1 < self.entries.len()
    }

    pub fn undo(&mut self) -> bool {
        let ok = self.can_undo();
        if ok {
            self.cursor -= 1;
        }
        ok
    }

    pub fn redo(&mut self) -> bool {
        let ok = self.can_redo();
        if ok {
            self.cursor += 1;
        }
        ok
    }

    /// What undo would revert, for the menu.
    pub fn undo_label(&self) -> Option<String> {
        self.can_undo()
            .then(|| describe(&self.entries[self.cursor].change))
    }

    pub fn redo_label(&self) -> Option<String> {
        self.can_redo()
            .then(|| describe(&self.entries[self.cursor + 1].change))
    }
}

fn describe(c: &Change) -> String {
    match c {
        Change::Start => "start".into(),
        Change::Replace(l) => l.clone(),
        Change::Edit(e) => match e {
            Edit::DragJoint { options, .. } => match (options.lock_lengths, options.symmetric) {
                (true, true) => "turn limbs symmetrically".into(),
                (true, false) => "turn limb".into(),
                (false, true) => "move joints symmetrically".into(),
                (false, false) => "move joint".into(),
            },
            Edit::MovePoint { part, .. } => format!("move {} point", part.name()),
            Edit::HidePart { part, .. } => format!("hide {}", part.name()),
            Edit::ShowPart { part, .. } => format!("show {}", part.name()),
            Edit::HideJoint { .. } => "hide joint".into(),
            Edit::ShowJoint { .. } => "show joint".into(),
            Edit::AddPerson { .. } => "add person".into(),
            Edit::InsertPerson { .. } => "add preset person".into(),
            Edit::Duplicate { .. } => "duplicate person".into(),
            Edit::Delete { .. } => "delete person".into(),
            Edit::Mirror { .. } => "mirror person".into(),
            Edit::SwapLeftRight { .. } => "swap left/right".into(),
            Edit::Translate { .. } => "move person".into(),
            Edit::Scale { .. } => "scale person".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skeleguide_engine::pose::edit::default_person;

    #[test]
    fn undo_redo_and_branching() {
        let mut s = PoseSet::new(100, 100);
        s.people.push(default_person((50.0, 50.0), 80.0));
        let mut h = History::new(s.clone());
        h.apply(Edit::Mirror { person: 0 }).unwrap();
        h.apply(Edit::Translate {
            person: 0,
            dx: 5.0,
            dy: 0.0,
        })
        .unwrap();
        let after = h.current().clone();
        assert!(h.undo() && h.undo());
        assert_eq!(h.current(), &s);
        assert!(!h.undo());
        assert!(h.redo() && h.redo());
        assert_eq!(h.current(), &after);
        assert!(!h.redo());
        h.undo();
        h.apply(Edit::Delete { person: 0 }).unwrap();
        assert!(!h.can_redo(), "a new edit drops the redo branch");
        assert!(h.apply(Edit::Delete { person: 3 }).is_err());
        assert!(h.current().people.is_empty());
    }
}
