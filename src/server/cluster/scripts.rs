//! The cluster's Lua scripts: every change to shared room state is one script, so Redis runs
//! it atomically (the room-size cap holds however many nodes race for the last place) and a
//! message costs one round trip whatever the room's size.
//!
//! Keys, all under `duet:`:
//! - `nodes`: the set of node ids that have state in Redis;
//! - `alive:NODE`: the node's heartbeat (its advertised address), with a short expiry;
//! - `room:NAME`: a hash from member (`NODE/SESSION`) to nickname;
//! - `rooms-of:NODE`: the rooms a node has members in (what to clean when it is lost);
//! - `load`: a hash from node to its connections at its last heartbeat;
//! - `waiting`: the client waiting for a partner (`/join` alone), as `NODE/SESSION NICK`;
//! - `rate:ADDRESS`: `--rate`'s token bucket for an address (IPv6: its /64), for 2 min;
//! - `wormhole-node`: the node that serves magic-wormhole for the cluster;
//! - `wormhole-state`: that node's mailboxes and nameplates (the snapshot
//!   `--wormhole-state` would write), for the node that takes over when it is lost;
//! - `pipe:TOKEN`: the node where pipe TOKEN's first end waits, with the pipe's expiry.
//!
//! Messages go to `duet:inbox:NODE`, a Pub/Sub channel each node listens on, as
//! `ROOM\nBYTES`: only nodes with members in the room get them. One other message goes
//! there: `!pair\nROOM\nSESSION\nNICK`, telling a node that its waiting client SESSION was
//! paired with NICK in private room ROOM.

use redis::Script;

/// A member's field in a room hash: `NODE/SESSION`.
pub fn member(node: &str, session: u64) -> String {
    format!("{node}/{session}")
}

pub fn room_key(room: &str) -> String {
    format!("duet:room:{room}")
}

pub fn rooms_of_key(node: &str) -> String {
    format!("duet:rooms-of:{node}")
}

pub fn alive_key(node: &str) -> String {
    format!("duet:alive:{node}")
}

pub fn inbox(node: &str) -> String {
    format!("duet:inbox:{node}")
}

pub const NODES: &str = "duet:nodes";
/// A hash from node to its connections now (for cluster-wide figures).
pub const LOAD: &str = "duet:load";
/// The wormhole node's mailbox state (see `Cluster::save_wormhole`).
pub const WORMHOLE_STATE: &str = "duet:wormhole-state";

/// Publishes ARGV[2] to the inbox of every node but ARGV[1] with a member in room KEYS[1];
/// returns how many nodes that was. Shared by the scripts below as `fan_out`.
const FAN_OUT: &str = r"
local function fan_out(key, origin, payload)
  local sent, seen = 0, {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local node = string.match(field, '^([^/]+)/')
    if node and node ~= origin and not seen[node] then
      seen[node] = true
      redis.call('PUBLISH', 'duet:inbox:' .. node, payload)
      sent = sent + 1
    end
  end
  return sent
end
";

/// KEYS: room, rooms-of. ARGV: member, nick, cap, room name. Full: nil. Joined: the
/// members already there, as `member, nick, …`.
const JOIN: &str = r"
local others = redis.call('HGETALL', KEYS[1])
if #others / 2 >= tonumber(ARGV[3]) then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return others
";

/// KEYS: room. ARGV: origin node, payload. Returns the number of nodes reached.
const SAY: &str = "return fan_out(KEYS[1], ARGV[1], ARGV[2])";

/// KEYS: room, rooms-of. ARGV: member, origin node, payload (empty: nobody is told), room
/// name, `1` if the node has no member left in the room.
const LEAVE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[5] == '1' then redis.call('SREM', KEYS[2], ARGV[4]) end
if ARGV[3] == '' then return 0 end
return fan_out(KEYS[1], ARGV[2], ARGV[3])
";

/// KEYS: room. ARGV: member, new nick, origin node, payload.
const NICK: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return fan_out(KEYS[1], ARGV[3], ARGV[4])
";

/// ARGV: this node, notice prefix, notice suffix. Every node in `duet:nodes` but this one
/// whose heartbeat has expired is lost: its members leave their rooms (the others are told
/// PREFIX NICK SUFFIX) and its state goes. Returns the lost nodes. Atomic, so two nodes
/// reaping at once do it once.
const REAP: &str = r"
local lost = {}
for _, node in ipairs(redis.call('SMEMBERS', 'duet:nodes')) do
  if node ~= ARGV[1] and redis.call('EXISTS', 'duet:alive:' .. node) == 0 then
    local prefix = node .. '/'
    for _, room in ipairs(redis.call('SMEMBERS', 'duet:rooms-of:' .. node)) do
      local key = 'duet:room:' .. room
      local all = redis.call('HGETALL', key)
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, #prefix) == prefix then
          redis.call('HDEL', key, all[i])
          fan_out(key, node, room .. '\n' .. ARGV[2] .. all[i + 1] .. ARGV[3])
        end
      end
    end
    redis.call('DEL', 'duet:rooms-of:' .. node)
    redis.call('SREM', 'duet:nodes', node)
    redis.call('HDEL', 'duet:load', node)
    table.insert(lost, node)
  end
end
return lost
";

/// ARGV: this node, its address, heartbeat ms, notice suffix for members gone meanwhile,
/// then `room, member, nick` for every member it has now. Puts this node's membership in
/// Redis as it is (after a reconnect, or Redis lost its data), telling rooms about members
/// that left while Redis could not be reached.
const RESYNC: &str = r"
local node = ARGV[1]
local prefix = node .. '/'
local now = {}
for i = 5, #ARGV, 3 do now[ARGV[i + 1]] = true end
for _, room in ipairs(redis.call('SMEMBERS', 'duet:rooms-of:' .. node)) do
  local key = 'duet:room:' .. room
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #prefix) == prefix and not now[all[i]] then
      redis.call('HDEL', key, all[i])
      fan_out(key, node, room .. '\n* ' .. all[i + 1] .. ARGV[4])
    end
  end
end
redis.call('DEL', 'duet:rooms-of:' .. node)
for i = 5, #ARGV, 3 do
  redis.call('HSET', 'duet:room:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  redis.call('SADD', 'duet:rooms-of:' .. node, ARGV[i])
end
redis.call('SADD', 'duet:nodes', node)
redis.call('SET', 'duet:alive:' .. node, ARGV[2], 'PX', ARGV[3])
return 1
";

/// KEYS: pipe. ARGV: this node, expiry ms. The first end of a pipe claims its token for
/// this node (empty reply); a later one learns where the first waits (`node, address`).
/// A claim by a node that is lost is taken over.
const CLAIM: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local address = redis.call('GET', 'duet:alive:' .. owner)
  if address then return {owner, address} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {}
";

/// KEYS: pipe. ARGV: this node. Gives the token back if this node still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// ARGV: this node, expiry ms. The wormhole node (where the mailbox server and transit relay
/// live) is this one if there is none, or the one there is has been lost; it keeps the
/// role while it heartbeats. Returns the wormhole node's address.
const HOME: &str = r"
local home = redis.call('GET', 'duet:wormhole-node')
local address = home and redis.call('GET', 'duet:alive:' .. home)
if not home or home == ARGV[1] or not address then
  redis.call('SET', 'duet:wormhole-node', ARGV[1], 'PX', ARGV[2])
  return redis.call('GET', 'duet:alive:' .. ARGV[1])
end
return address
";

/// ARGV: this client (`NODE/SESSION NICK`). Matchmaking: takes the client waiting in
/// `duet:waiting` (skipping those of lost nodes and this client itself) and returns it, or
/// makes this client the one waiting (nil).
const PAIR: &str = r"
while true do
  local waiting = redis.call('LPOP', 'duet:waiting')
  if not waiting then
    redis.call('RPUSH', 'duet:waiting', ARGV[1])
    return false
  end
  local node = string.match(waiting, '^([^/]+)/')
  if waiting ~= ARGV[1] and node and redis.call('EXISTS', 'duet:alive:' .. node) == 1 then
    return waiting
  end
end
";

/// KEYS: room, rooms-of (this node), rooms-of (the partner's). ARGV: this member, its nick,
/// the partner's member, its nick, room name, the partner's inbox, the message for it.
/// A private room of two across nodes: both members in Redis, the partner's node told.
const PAIRED: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
";

pub const WAITING: &str = "duet:waiting";

/// KEYS: the address's bucket. ARGV: joins and pipes a minute. `--rate` across the cluster:
/// a token bucket in Redis (Redis's clock, so the nodes' clocks do not matter). Returns 0
/// when a token was taken, or the milliseconds until one will be there.
const RATE: &str = r"
local rate = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or rate
local at = tonumber(bucket[2]) or now
tokens = math.min(rate, tokens + (now - at) * rate / 60000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 60000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 120000)
return wait
";

pub fn rate_key(address: std::net::IpAddr) -> String {
    format!("duet:rate:{address}")
}

pub fn pipe_key(token: &str) -> String {
    format!("duet:pipe:{token}")
}

/// The scripts, compiled once (each is sent by its SHA-1; Redis is given the text again
/// when it does not know it, e.g. after a restart).
#[derive(Debug)]
pub struct Scripts {
    pub join: Script,
    pub say: Script,
    pub leave: Script,
    pub nick: Script,
    pub reap: Script,
    pub resync: Script,
    pub claim: Script,
    pub release: Script,
    pub home: Script,
    pub pair: Script,
    pub paired: Script,
    pub rate: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let with_fan_out = |body: &str| Script::new(&format!("{FAN_OUT}{body}"));
        Scripts {
            join: Script::new(JOIN),
            say: with_fan_out(SAY),
            leave: with_fan_out(LEAVE),
            nick: with_fan_out(NICK),
            reap: with_fan_out(REAP),
            resync: with_fan_out(RESYNC),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            home: Script::new(HOME),
            pair: Script::new(PAIR),
            paired: Script::new(PAIRED),
            rate: Script::new(RATE),
        }
    }
}
