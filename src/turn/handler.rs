//! STUN/TURN request handling: authentication and the Allocate, Refresh,
//! CreatePermission, ChannelBind and Send logic of RFC 8656.

use super::allocation::{Allocation, Channel, ClientKey, Sink};
use super::credentials::{Lookup, NonceCheck, unix_now};
use super::message::{self as msg, Integrity, PROTO_UDP};
use super::quota::TurnMetrics;
use super::server::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stun::attributes::*;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, Setter,
};

/// Who sent a message and how to reach them.
pub struct Origin<'a> {
    pub key: ClientKey,
    pub client: SocketAddr,
    pub sink: &'a Sink,
}

/// An authenticated request: the username and the key to sign the answer.
struct Authed {
    username: String,
    key: Vec<u8>,
    integrity: Integrity,
}

/// Handles one STUN message; returns the answer to send, if any.
pub async fn handle(sh: &Arc<Shared>, raw: &[u8], from: &Origin<'_>) -> Option<Vec<u8>> {
    // Send indications first, read in place: the data path of clients
    // without channels.
    if let Some((peer, data)) = super::indication::read_send(raw) {
        relay_send(sh, from, peer, data).await;
        return None;
    }
    let Ok(m) = msg::parse(raw) else {
        TurnMetrics::add(&sh.metrics.dropped, 1);
        return None;
    };
    if m.contains(ATTR_FINGERPRINT) && stun::fingerprint::FINGERPRINT.check(&m).is_err() {
        TurnMetrics::add(&sh.metrics.dropped, 1);
        return None;
    }
    if m.typ.class == CLASS_INDICATION {
        if m.typ.method == METHOD_SEND {
            send_indication(sh, &m, from).await;
        }
        return None;
    }
    if m.typ.class != CLASS_REQUEST {
        return None;
    }
    let unknown = msg::unknown_required(&m);
    if !unknown.is_empty() {
        let mut r = msg::error(&m, 420);
        let _ = stun::uattrs::UnknownAttributes(unknown).add_to(&mut r);
        return finish(r, None);
    }
    if m.typ.method == METHOD_BINDING {
        let mut r = msg::success(&m);
        msg::add_xor_addr(&mut r, ATTR_XORMAPPED_ADDRESS, from.client).ok()?;
        return finish(r, None);
    }
    let method = m.typ.method;
    if ![
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ]
    .contains(&method)
    {
        return finish(msg::error(&m, 400), None);
    }
    let auth = match authenticate(sh, &m, from) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let signed = |r: Message| finish(r, Some((&auth.key, auth.integrity)));
    let result = if method == METHOD_ALLOCATE {
        allocate(sh, &m, &auth, from).await
    } else {
        let Some(a) = sh.table.get(&from.key) else {
            return signed(msg::error(&m, 437));
        };
        if a.username != auth.username {
            return signed(msg::error(&m, 441));
        }
        if method == METHOD_REFRESH {
            refresh(sh, &m, &a)
        } else if method == METHOD_CREATE_PERMISSION {
            create_permission(sh, &m, &a)
        } else {
            channel_bind(sh, &m, &a)
        }
    };
    signed(result.unwrap_or_else(|code| {
        tracing::debug!(client = %from.client, %method, code, "TURN request refused");
        msg::error(&m, code)
    }))
}

fn finish(mut r: Message, key: Option<(&[u8], Integrity)>) -> Option<Vec<u8>> {
    msg::seal(&mut r, key).ok()?;
    Some(r.raw)
}

/// The long-term credential mechanism (RFC 8489 §9.2.4).
fn authenticate(sh: &Shared, m: &Message, from: &Origin<'_>) -> Result<Authed, Option<Vec<u8>>> {
    let client = from.client;
    // Only UDP sources can be spoofed to reflect 401s at a victim; a stream
    // client proved its address with the handshake and gets its answer.
    let udp = matches!(from.key, ClientKey::Udp(_));
    let challenge = |code: u16| -> Option<Vec<u8>> {
        if code == 401 {
            TurnMetrics::add(&sh.metrics.unauthorized, 1);
            if udp
                && !sh
                    .storms
                    .allow(client.ip(), sh.settings.quotas.unauthorized_per_ip)
            {
                TurnMetrics::add(&sh.metrics.dropped, 1);
                return None;
            }
        }
        let mut r = msg::error(m, code);
        r.add(ATTR_REALM, sh.auth.realm().as_bytes());
        r.add(ATTR_NONCE, sh.auth.nonce(client).as_bytes());
        finish(r, None)
    };
    let has_integrity =
        m.contains(ATTR_MESSAGE_INTEGRITY) || m.contains(msg::ATTR_MESSAGE_INTEGRITY_SHA256);
    if !has_integrity {
        return Err(challenge(401));
    }
    let (Some(username), Some(realm), Some(nonce)) = (
        msg::text(m, ATTR_USERNAME),
        msg::text(m, ATTR_REALM),
        msg::text(m, ATTR_NONCE),
    ) else {
        return Err(finish(msg::error(m, 400), None));
    };
    if realm != sh.auth.realm() {
        return Err(challenge(401));
    }
    if sh.auth.check_nonce(nonce, client) != NonceCheck::Valid {
        return Err(challenge(438));
    }
    let key = match sh.auth.key_for(username, unix_now()) {
        Lookup::Key(k) => k,
        Lookup::Unknown | Lookup::Expired => return Err(challenge(401)),
    };
    match msg::verify(m, &key) {
        Some(Ok(integrity)) => Ok(Authed {
            username: username.to_string(),
            key,
            integrity,
        }),
        _ => Err(challenge(401)),
    }
}

fn lifetime_attr(m: &Message) -> Result<Option<Duration>, u16> {
    match msg::attr(m, ATTR_LIFETIME) {
        None => Ok(None),
        Some(v) if v.len() == 4 => Ok(Some(Duration::from_secs(u64::from(u32::from_be_bytes([
            v[0], v[1], v[2], v[3],
        ]))))),
        Some(_) => Err(400),
    }
}

fn add_lifetime(r: &mut Message, d: Duration) {
    r.add(
        ATTR_LIFETIME,
        &(d.as_secs().min(u64::from(u32::MAX)) as u32).to_be_bytes(),
    );
}

async fn allocate(
    sh: &Arc<Shared>,
    m: &Message,
    auth: &Authed,
    from: &Origin<'_>,
) -> Result<Message, u16> {
    let t = sh.settings.timings;
    if let Some(existing) = sh.table.get(&from.key) {
        if existing.transaction != m.transaction_id.0 {
            return Err(437);
        }
        // A retransmitted Allocate: the same answer again.
        let left = existing
            .lock()
            .expires
            .saturating_duration_since(Instant::now());
        return allocate_success(m, &existing, left);
    }
    match msg::attr(m, ATTR_REQUESTED_TRANSPORT) {
        None => return Err(400),
        Some(v) if v.len() != 4 => return Err(400),
        Some(v) if v[0] != PROTO_UDP => return Err(442),
        Some(_) => {}
    }
    if m.contains(ATTR_RESERVATION_TOKEN) {
        // Reservations are not kept, so no token can be valid.
        return Err(508);
    }
    if let Some(family) = msg::attr(m, msg::ATTR_REQUESTED_ADDRESS_FAMILY) {
        let want_v4 = match family.first() {
            Some(0x01) => true,
            Some(0x02) => false,
            _ => return Err(400),
        };
        if want_v4 != sh.settings.relay_ip.is_ipv4() {
            return Err(440);
        }
    }
    let q = sh.settings.quotas;
    let (total, user, ip) = sh.table.counts(&auth.username, from.client.ip());
    if user >= q.allocations_per_user || ip >= q.allocations_per_ip || total >= q.total_allocations
    {
        TurnMetrics::add(&sh.metrics.quota_denials, 1);
        return Err(486);
    }
    let lifetime = match lifetime_attr(m)? {
        Some(l) => l.min(t.max_lifetime).max(t.default_lifetime),
        None => t.default_lifetime,
    };
    let even = m.contains(ATTR_EVEN_PORT);
    let Some((socket, local)) = sh.bind_relay(even).await else {
        return Err(508);
    };
    let public = SocketAddr::new(sh.settings.advertised_ip, local.port());
    let a = Arc::new(Allocation::new(
        from.key,
        from.client,
        auth.username.clone(),
        m.transaction_id.0,
        Arc::new(socket),
        local,
        public,
        from.sink.clone(),
        Instant::now() + lifetime,
        q.allocation_bps,
    ));
    sh.table.insert(a.clone());
    let task = tokio::spawn(super::server::relay_loop(sh.clone(), a.clone()));
    a.set_task(task.abort_handle());
    sh.metrics
        .allocations_active
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TurnMetrics::add(&sh.metrics.allocations_total, 1);
    tracing::debug!(client = %from.client, relay = %public, user = %auth.username, "allocated");
    allocate_success(m, &a, lifetime)
}

fn allocate_success(m: &Message, a: &Allocation, lifetime: Duration) -> Result<Message, u16> {
    let mut r = msg::success(m);
    msg::add_xor_addr(&mut r, ATTR_XOR_RELAYED_ADDRESS, a.relay_public).map_err(|_| 500u16)?;
    add_lifetime(&mut r, lifetime);
    msg::add_xor_addr(&mut r, ATTR_XORMAPPED_ADDRESS, a.client).map_err(|_| 500u16)?;
    Ok(r)
}

fn refresh(sh: &Shared, m: &Message, a: &Arc<Allocation>) -> Result<Message, u16> {
    let t = sh.settings.timings;
    let lifetime = lifetime_attr(m)?.map_or(t.default_lifetime, |l| l.min(t.max_lifetime));
    if lifetime.is_zero() {
        sh.remove(&a.key);
    } else {
        a.lock().expires = Instant::now() + lifetime;
    }
    let mut r = msg::success(m);
    add_lifetime(&mut r, lifetime);
    Ok(r)
}

/// Checks a peer against the family of the relay and the policy.
fn admit(sh: &Shared, a: &Allocation, peer: SocketAddr) -> Result<(), u16> {
    if peer.is_ipv4() != a.relay_local.is_ipv4() {
        return Err(443);
    }
    sh.permits(peer).map_err(|_| 403)
}

fn create_permission(sh: &Shared, m: &Message, a: &Arc<Allocation>) -> Result<Message, u16> {
    let peers = msg::peer_addrs(m).ok_or(400u16)?;
    if peers.is_empty() {
        return Err(400);
    }
    for p in &peers {
        admit(sh, a, *p)?;
    }
    let expires = Instant::now() + sh.settings.timings.permission;
    let mut st = a.lock();
    for p in peers {
        st.permissions.insert(p.ip(), expires);
    }
    Ok(msg::success(m))
}

fn channel_bind(sh: &Shared, m: &Message, a: &Arc<Allocation>) -> Result<Message, u16> {
    let channel = match msg::attr(m, ATTR_CHANNEL_NUMBER) {
        Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
        _ => return Err(400),
    };
    if !msg::CHANNELS.contains(&channel) {
        return Err(400);
    }
    let peers = msg::peer_addrs(m).ok_or(400u16)?;
    let [peer] = peers[..] else {
        return Err(400);
    };
    admit(sh, a, peer)?;
    let now = Instant::now();
    let t = sh.settings.timings;
    let mut st = a.lock();
    if st.channels.get(&channel).is_some_and(|c| c.peer != peer) {
        return Err(400);
    }
    if st.peer_channels.get(&peer).is_some_and(|c| *c != channel) {
        return Err(400);
    }
    st.channels.insert(
        channel,
        Channel {
            peer,
            expires: now + t.channel,
        },
    );
    st.peer_channels.insert(peer, channel);
    st.permissions.insert(peer.ip(), now + t.permission);
    Ok(msg::success(m))
}

async fn send_indication(sh: &Arc<Shared>, m: &Message, from: &Origin<'_>) {
    if let (Some(peer), Some(data)) = (
        msg::attr(m, ATTR_XOR_PEER_ADDRESS).and_then(|v| msg::xor_addr(v, &m.transaction_id.0)),
        msg::attr(m, ATTR_DATA),
    ) {
        relay_send(sh, from, peer, data).await;
    }
}

/// Data from a Send indication to `peer`, if the allocation permits it.
async fn relay_send(sh: &Arc<Shared>, from: &Origin<'_>, peer: SocketAddr, data: &[u8]) {
    let Some(a) = sh.table.get(&from.key) else {
        return;
    };
    let allowed = a.lock().permitted(peer.ip(), Instant::now());
    if allowed {
        sh.send_to_peer(&a, peer, data).await;
    }
}
