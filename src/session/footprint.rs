//! What an idle session's task keeps: the future of [`crate::session::serve`], from the moment
//! the relay runs until the session ends. Everything a session needs only at its start or end is
//! boxed and freed (the startup and login phases, [`crate::session::ending`]), and the relay polls
//! its two pumps from one future whose state lives in the pumps themselves; this test keeps it so.

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use crate::control::Attached;
    use crate::registry::SessionInfo;
    use crate::session::observe::{ClientSide, ServerSide};
    use crate::session::pump::Pump;
    use crate::session::relay::Login;
    use crate::shared::Shared;
    use crate::tls::MaybeTls;

    /// The size of the future an async function returns, without calling it.
    fn future_of<Args, F: FnOnce5<Args>>(_: F) -> usize {
        std::mem::size_of::<F::Fut>()
    }

    /// `FnOnce` for the argument lists used here, naming the returned future's type.
    trait FnOnce5<Args> {
        type Fut;
    }
    impl<A, B, C, D, E, Fut, F: FnOnce(A, B, C, D, E) -> Fut> FnOnce5<(A, B, C, D, E)> for F {
        type Fut = Fut;
    }
    impl<A, B, C, D, E, G, Fut, F: FnOnce(A, B, C, D, E, G) -> Fut> FnOnce5<(A, B, C, D, E, G)> for F {
        type Fut = Fut;
    }

    #[test]
    fn an_idle_session_keeps_a_small_future() {
        let serve = future_of::<(u64, TcpStream, SocketAddr, Arc<Shared>, CancellationToken), _>(
            crate::session::serve,
        );
        let relay = future_of::<
            (
                &'static mut MaybeTls,
                &'static mut Option<(MaybeTls, Attached<'static>)>,
                &'static mut Login,
                &'static Shared,
                &'static SessionInfo,
            ),
            _,
        >(crate::session::relay::relay);
        // What the relay legitimately keeps: both connections and their halves, two pumps, two
        // observers, the hand-over of the rare events; with room for what the compiler lays out
        // besides (unoptimised builds, where tests run, lay out more than release builds).
        let kept = 2 * size_of::<MaybeTls>()
            + 2 * size_of::<Pump>()
            + size_of::<ClientSide>()
            + size_of::<ServerSide>()
            + size_of::<Login>()
            + size_of::<Attached>();
        eprintln!("serve {serve} B, relay {relay} B, parts kept {kept} B");
        assert!(
            relay <= 2 * kept,
            "the relay's future is {relay} bytes, over 2× the {kept} bytes of what it keeps: \
             state an idle session does not use is held inline (box it)"
        );
        assert!(
            serve <= relay + 512,
            "the session's future is {serve} bytes, the relay's {relay}: the phases before the \
             relay are no longer boxed"
        );
    }
}
