//! [`Store`] as the HTTP layer's [`Service`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    Applied, ChangeAnswer, ClusterView, JoinRequest, Leader, Loaded, Member, MembershipError,
    ReadRequest, ReadResult, Removal, StepDownAnswer, Store, StoreError, StoreStatus,
};
use crate::command::Request;
use crate::http::service::Service;

impl Service for Store {
    fn name(&self) -> &str {
        Store::name(self)
    }
    fn id(&self) -> u64 {
        Store::id(self)
    }
    fn leader(&self) -> Leader {
        Store::leader(self)
    }
    fn transferring_leadership(&self) -> bool {
        Store::transferring_leadership(self)
    }
    fn fatal(&self) -> Option<String> {
        Store::fatal(self)
    }
    fn commit_index(&self) -> u64 {
        Store::commit_index(self)
    }
    async fn execute(&self, request: Request, timeout: Duration) -> Result<Applied, StoreError> {
        let start = Instant::now();
        let applied = Store::execute(self, request, timeout).await;
        if applied.is_ok() {
            self.health.stats.execute.observe(start.elapsed());
        }
        applied
    }
    async fn query(&self, read: ReadRequest) -> Result<ReadResult, StoreError> {
        let (start, level) = (Instant::now(), read.level);
        let result = Store::query(self, read).await;
        if result.is_ok() {
            self.health.stats.query(level).observe(start.elapsed());
        }
        result
    }
    async fn all_read_only(&self, sql: Vec<String>) -> Result<bool, StoreError> {
        Store::all_read_only(self, sql).await
    }
    async fn wait_applied(&self, n: u64, timeout: Duration) -> Result<(), u64> {
        Store::wait_applied(self, n, timeout).await
    }
    async fn backup(&self) -> Result<Vec<u8>, StoreError> {
        Store::backup(self).await
    }
    async fn load(&self, body: Bytes) -> Result<Loaded, StoreError> {
        Store::load(self, body).await
    }
    async fn dump(&self, tables: Option<Vec<String>>) -> Result<String, StoreError> {
        Store::dump(self, tables).await
    }
    fn members(&self) -> (Option<u64>, Vec<Member>) {
        Store::members(self)
    }
    fn status(&self) -> StoreStatus {
        Store::status(self)
    }
    async fn join(&self, request: JoinRequest) -> Result<ChangeAnswer, MembershipError> {
        Store::join(self, request).await
    }
    async fn remove(&self, name: String) -> Result<Removal, MembershipError> {
        Store::remove(self, &name).await
    }
    async fn promote(&self, name: String) -> Result<ChangeAnswer, MembershipError> {
        Store::promote(self, &name).await
    }
    async fn step_down(&self, to: Option<String>) -> Result<StepDownAnswer, MembershipError> {
        Store::step_down(self, to.as_deref()).await
    }
    async fn campaign(&self) -> Result<String, MembershipError> {
        Store::campaign(self).await
    }
    async fn cluster_view(&self) -> ClusterView {
        Store::cluster_view(self).await
    }
}
