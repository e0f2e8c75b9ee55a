//! The soak's config churn: the load harness's mesh (`benches/load/mesh.rs`) on disk, and the
//! edits made to it while the soak runs: endpoint sets changed, rules edited, whole services
//! created and deleted. Every edit is one file written atomically (or removed) and counted as
//! one change; an edit the filesystem refuses (a full disk) is counted apart and the churn goes
//! on, as a config tool would retry. It writes files only; timing them and measuring rudder is the harness's business.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::mesh::{self, ServiceShape};

/// Endpoints per service at the start; edits keep each service between one and
/// [`MOST_ENDPOINTS`], a walk whose average stays at this.
const ENDPOINTS: usize = 3;
const MOST_ENDPOINTS: usize = 5;

/// A small seeded generator (xorshift64*), so a soak's sequence of edits can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift never leaves zero.
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `bound` (which is above 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// The mesh as last written, and the edits to make next.
pub struct ConfigChurn {
    dir: PathBuf,
    /// The services always present (0..services), then the ones created and deleted.
    shapes: Vec<ServiceShape>,
    services: usize,
    /// Whether each of the optional services (index `services + i`) exists now.
    optional: Vec<bool>,
    rng: Rng,
    changes: Arc<AtomicU64>,
    failed_writes: u64,
}

impl ConfigChurn {
    /// Writes the starting mesh: `services` services, none of the optional ones.
    pub fn write_mesh(dir: &Path, services: usize, seed: u64) -> std::io::Result<ConfigChurn> {
        let optional = (services / 10).max(1);
        let shapes = vec![ServiceShape::new(ENDPOINTS); services + optional];
        for (index, shape) in shapes.iter().enumerate().take(services) {
            mesh::write_service(dir, index, *shape)?;
        }
        Ok(ConfigChurn {
            dir: dir.to_path_buf(),
            shapes,
            services,
            optional: vec![false; optional],
            rng: Rng::new(seed),
            changes: Arc::default(),
            failed_writes: 0,
        })
    }

    /// Changes made so far, shared with whoever samples them.
    pub fn changes(&self) -> Arc<AtomicU64> {
        self.changes.clone()
    }

    /// Edits that could not be written (not counted as changes).
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes
    }

    /// One service's endpoint set changed: an endpoint added, one removed, or all of them
    /// replaced by others (same WorkloadEntries, new addresses).
    pub fn change_endpoints(&mut self) {
        let index = self.rng.below(self.services);
        let shape = &mut self.shapes[index];
        match self.rng.below(3) {
            0 if shape.endpoints < MOST_ENDPOINTS => shape.endpoints += 1,
            0 | 1 if shape.endpoints > 1 => shape.endpoints -= 1,
            1 => shape.endpoints += 1,
            _ => shape.endpoint_offset = (shape.endpoint_offset + shape.endpoints) % 250,
        }
        self.write(index);
    }

    /// One rule edited (a VirtualService's weights, or its header match and timeout, or a
    /// DestinationRule's traffic policy), or one optional service created or deleted.
    pub fn change_rules(&mut self) {
        let choice = self.rng.below(10);
        if choice >= 8 {
            return self.toggle_optional_service();
        }
        let index = self.rng.below(self.services);
        let shape = &mut self.shapes[index];
        match choice {
            0..=3 => shape.v1_weight = 10 * (1 + self.rng.below(9) as u32),
            4 | 5 => shape.route_revision = shape.route_revision % 1000 + 1,
            // 0 drops the traffic policy again.
            _ => shape.policy_revision = self.rng.below(1000) as u32,
        }
        self.write(index);
    }

    /// An edit every proxy is sent (a route of service 0), to check they all still receive;
    /// whether it was written.
    pub fn mark(&mut self) -> bool {
        let shape = &mut self.shapes[0];
        shape.route_revision = shape.route_revision % 1000 + 1;
        self.write(0)
    }

    fn toggle_optional_service(&mut self) {
        let which = self.rng.below(self.optional.len());
        let index = self.services + which;
        let present = &mut self.optional[which];
        *present = !*present;
        if *present {
            self.write(index);
        } else {
            let removed = mesh::remove_service(&self.dir, index);
            self.count(removed);
        }
    }

    fn write(&mut self, index: usize) -> bool {
        let written = mesh::write_service(&self.dir, index, self.shapes[index]);
        self.count(written)
    }

    fn count(&mut self, edited: std::io::Result<()>) -> bool {
        match edited {
            Ok(()) => {
                self.changes.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.failed_writes += 1;
                eprintln!("soak: an edit was not written: {error}");
                false
            }
        }
    }
}
