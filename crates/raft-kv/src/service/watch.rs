//! The etcd `Watch` service: one bidirectional stream per client carrying many watches,
//! served by this member's watch hub from its own applied state (no leader round trip).
//!
//! Two tasks per stream: one reads the client's requests (create, cancel, progress) while
//! the stream's queue has room, one turns the queue into responses and sends them as fast
//! as the client takes them. A client that closes its sending side keeps its watches (as
//! with etcd); the stream ends when the client goes away. With authentication on, a create
//! on a range the caller may not read is refused (created and canceled at once, the cancel
//! reason "etcdserver: permission denied"), as etcd does.

use super::EtcdService;
use crate::auth::Access;
use crate::pb::etcdserverpb::{self as pb, watch_request::RequestUnion, watch_server};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered between the sending task and gRPC (the stream's queue holds the rest).
const SEND_BUFFER: usize = 4;

#[tonic::async_trait]
impl watch_server::Watch for EtcdService {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let Some(hub) = self.watch.as_ref() else {
            return Err(Status::unimplemented("Watch is not served by this server"));
        };
        // The caller is fixed for the stream; each create is checked under the auth state
        // of its moment.
        let who = self.who(&req).await?;
        let mut inbound = req.into_inner();
        let stream = Arc::new(hub.open_stream());
        let store = self.ctx.store.clone();
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let reader = {
            let stream = stream.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    stream.wait_room().await;
                    match inbound.message().await {
                        Ok(Some(req)) => match req.request_union {
                            Some(RequestUnion::CreateRequest(c)) => {
                                let checked = who.under(store.auth_state()).and_then(|s| {
                                    s.check_range(&who.user, &c.key, &c.range_end, Access::Read)
                                });
                                match checked {
                                    Ok(()) => {
                                        stream.create(&c);
                                    }
                                    Err(e) => stream.refuse(&e.to_string()),
                                }
                            }
                            Some(RequestUnion::CancelRequest(c)) => {
                                stream.cancel(c.watch_id);
                            }
                            Some(RequestUnion::ProgressRequest(_)) => stream.request_progress(),
                            None => {}
                        },
                        Ok(None) => return,
                        Err(status) => {
                            tracing::debug!(%status, "watch stream: the client's side failed");
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            })
        };
        let svc = self.clone();
        let max_bytes = self.ctx.limits.max_request_bytes;
        tokio::spawn(async move {
            let header = |rev| svc.header(rev);
            'send: loop {
                tokio::select! {
                    resps = stream.next_responses(max_bytes, &header) => {
                        for r in resps {
                            if tx.send(Ok(r)).await.is_err() {
                                break 'send;
                            }
                        }
                    }
                    _ = tx.closed() => break 'send,
                }
            }
            reader.abort();
            // The last handle on the stream goes with this task: its watches end.
            drop(stream);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
