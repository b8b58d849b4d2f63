//! Cutting a [`Batch`] apart: into runs of compatible flags (the seed's sub-batches),
//! without its filtered records, or in two.

use super::{Batch, RecordFlag};

impl Batch {
    /// Splits the batch into maximal runs of compatible flags, in order: ack and
    /// filter together, nack alone, retry alone. Each sub-batch is untainted and keeps
    /// the split originals of the origins it holds.
    pub fn into_sub_batches(self) -> Vec<(RecordFlag, Batch)> {
        let Batch {
            records,
            statuses,
            origins,
            splits,
            ..
        } = self;
        let mut out: Vec<(RecordFlag, Batch)> = Vec::new();
        for ((record, status), origin) in records.into_iter().zip(statuses).zip(origins) {
            let group = group_of(status.flag);
            let start_new = match out.last() {
                Some((flag, _)) => group_of(*flag) != group,
                None => true,
            };
            if start_new {
                out.push((status.flag, Batch::default()));
            }
            if let Some((_, b)) = out.last_mut() {
                if status.flag == RecordFlag::Filter {
                    b.filter_count += 1;
                }
                b.records.push(record);
                b.statuses.push(status);
                b.origins.push(origin);
            }
        }
        if !splits.is_empty() {
            for (_, b) in &mut out {
                b.splits = splits
                    .iter()
                    .filter(|(o, _)| b.origins.contains(o))
                    .cloned()
                    .collect();
            }
        }
        out
    }

    /// Removes the filtered records, returning the origins they had (in order).
    pub fn take_filtered(&mut self) -> Vec<u64> {
        if self.filter_count == 0 {
            return Vec::new();
        }
        let keep = self.records.len() - self.filter_count;
        let mut filtered = Vec::with_capacity(self.filter_count);
        let mut records = Vec::with_capacity(keep);
        let mut statuses = Vec::with_capacity(keep);
        let mut origins = Vec::with_capacity(keep);
        let old_records = std::mem::take(&mut self.records);
        let old_statuses = std::mem::take(&mut self.statuses);
        let old_origins = std::mem::take(&mut self.origins);
        for ((record, status), origin) in old_records.into_iter().zip(old_statuses).zip(old_origins)
        {
            if status.flag == RecordFlag::Filter {
                filtered.push(origin);
            } else {
                records.push(record);
                statuses.push(status);
                origins.push(origin);
            }
        }
        self.records = records;
        self.statuses = statuses;
        self.origins = origins;
        self.filter_count = 0;
        filtered
    }

    /// Splits off the records from physical index `at` on into a new batch (split
    /// originals are copied to both halves as needed).
    pub fn split_off(&mut self, at: usize) -> Batch {
        let records = self.records.split_off(at);
        let statuses = self.statuses.split_off(at);
        let origins = self.origins.split_off(at);
        let filter_count = statuses
            .iter()
            .filter(|s| s.flag == RecordFlag::Filter)
            .count();
        self.filter_count -= filter_count;
        let splits = self
            .splits
            .iter()
            .filter(|(o, _)| origins.contains(o))
            .cloned()
            .collect();
        Batch {
            records,
            statuses,
            origins,
            filter_count,
            tainted: self.tainted,
            splits,
        }
    }
}

fn group_of(flag: RecordFlag) -> u8 {
    match flag {
        RecordFlag::Ack | RecordFlag::Filter => 0,
        RecordFlag::Nack => 1,
        RecordFlag::Retry => 2,
    }
}
