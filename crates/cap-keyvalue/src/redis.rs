//! The Redis backend: a store is the keys under `kindling/<namespace>/<label>/` of one Redis
//! server, with its key count and byte total kept beside them (`.../#usage`) by the same Lua
//! scripts that write, so that limits hold and no two writers race. Counters are Redis's own
//! decimal numbers (`INCRBY`).

use std::sync::Arc;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::backend::{Backend, KeyPage, KvError, Limits, Usage};

/// A store on a Redis server.
#[derive(Clone)]
pub(crate) struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    limits: Limits,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    put: redis::Script,
    delete: redis::Script,
    swap: redis::Script,
    increment: redis::Script,
}

// KEYS[1] the key, KEYS[2] the usage hash. ARGV[1] the value, ARGV[2] key length,
// ARGV[3] max keys, ARGV[4] max bytes. Returns 1, or an error naming the limit.
const PUT: &str = r#"
local old = redis.call('STRLEN', KEYS[1])
local existed = redis.call('EXISTS', KEYS[1])
local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
local klen = tonumber(ARGV[2])
if existed == 0 then
  keys = keys + 1
  bytes = bytes + klen + #ARGV[1]
else
  bytes = bytes - old + #ARGV[1]
end
if keys > tonumber(ARGV[3]) then return redis.error_reply('limit:keys') end
if bytes > tonumber(ARGV[4]) then return redis.error_reply('limit:bytes') end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'keys', keys, 'bytes', bytes)
return 1
"#;

// KEYS[1] the key, KEYS[2] the usage hash, ARGV[1] key length.
const DELETE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  local old = redis.call('STRLEN', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('HINCRBY', KEYS[2], 'keys', -1)
  redis.call('HINCRBY', KEYS[2], 'bytes', -(old + tonumber(ARGV[1])))
end
return 1
"#;

// As PUT, when the key still holds ARGV[5] (ARGV[6] = '1' when it must be absent).
const SWAP: &str = r#"
local current = redis.call('GET', KEYS[1])
if ARGV[6] == '1' then
  if current then return 0 end
elseif current ~= ARGV[5] then
  return 0
end
local old = redis.call('STRLEN', KEYS[1])
local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
if not current then
  keys = keys + 1
  bytes = bytes + tonumber(ARGV[2]) + #ARGV[1]
else
  bytes = bytes - old + #ARGV[1]
end
if keys > tonumber(ARGV[3]) then return redis.error_reply('limit:keys') end
if bytes > tonumber(ARGV[4]) then return redis.error_reply('limit:bytes') end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'keys', keys, 'bytes', bytes)
return 1
"#;

// KEYS[1] the key, KEYS[2] the usage hash, ARGV[1] the delta, ARGV[2] key length,
// ARGV[3] max keys, ARGV[4] max bytes. Returns the new value.
const INCREMENT: &str = r#"
local old = redis.call('STRLEN', KEYS[1])
local existed = redis.call('EXISTS', KEYS[1])
if existed == 0 then
  local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0') + 1
  if keys > tonumber(ARGV[3]) then return redis.error_reply('limit:keys') end
end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local grown = redis.call('STRLEN', KEYS[1]) - old
if existed == 0 then
  redis.call('HINCRBY', KEYS[2], 'keys', 1)
  grown = grown + tonumber(ARGV[2])
end
redis.call('HINCRBY', KEYS[2], 'bytes', grown)
return value
"#;

impl RedisStore {
    /// A store of `namespace`'s `label` on the server at `url`. Connects on first use.
    pub(crate) fn new(
        url: &str,
        namespace: &str,
        label: &str,
        limits: Limits,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|err| format!("Redis URL {url:?}: {err}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                prefix: format!("kindling/{namespace}/{label}/"),
                limits,
                scripts: Scripts {
                    put: redis::Script::new(PUT),
                    delete: redis::Script::new(DELETE),
                    swap: redis::Script::new(SWAP),
                    increment: redis::Script::new(INCREMENT),
                },
            }),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let connection = self
            .inner
            .connection
            .get_or_try_init(|| ConnectionManager::new(self.inner.client.clone()))
            .await
            .map_err(|err| KvError::Backend(format!("cannot reach Redis: {err}")))?;
        Ok(connection.clone())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn usage_key(&self) -> String {
        format!("{}#usage", self.inner.prefix)
    }

    fn limit_error(&self, err: redis::RedisError) -> KvError {
        let text = err.to_string();
        let limits = &self.inner.limits;
        if text.contains("limit:keys") {
            KvError::Limit(format!(
                "the store holds its most keys ({}); delete some first",
                limits.max_keys
            ))
        } else if text.contains("limit:bytes") {
            KvError::Limit(format!(
                "the store holds its most bytes ({}); delete some first",
                limits.max_bytes
            ))
        } else {
            KvError::Backend(text)
        }
    }
}

fn backend(err: redis::RedisError) -> KvError {
    KvError::Backend(err.to_string())
}

#[async_trait]
impl Backend for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut conn = self.connection().await?;
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(backend)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let limits = self.inner.limits;
        limits.check(key, Some(value))?;
        let mut conn = self.connection().await?;
        let _: i64 = self
            .inner
            .scripts
            .put
            .key(self.key(key))
            .key(self.usage_key())
            .arg(value)
            .arg(key.len())
            .arg(limits.max_keys)
            .arg(limits.max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.limit_error(err))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut conn = self.connection().await?;
        let _: i64 = self
            .inner
            .scripts
            .delete
            .key(self.key(key))
            .key(self.usage_key())
            .arg(key.len())
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        let mut conn = self.connection().await?;
        redis::cmd("EXISTS")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(backend)
    }

    async fn keys(&self, after: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        // SCAN has no order and no "after": read the store's keys, order them, and page.
        let mut conn = self.connection().await?;
        let pattern = format!("{}*", escape_glob(&self.inner.prefix));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        let usage = self.usage_key();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            keys.extend(
                batch
                    .into_iter()
                    .filter(|k| *k != usage)
                    .filter_map(|k| k.strip_prefix(&self.inner.prefix).map(str::to_string))
                    .filter(|k| after.is_none_or(|after| k.as_str() > after)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(crate::sqlite::page(keys, limit))
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let limits = self.inner.limits;
        limits.check(key, None)?;
        let mut conn = self.connection().await?;
        self.inner
            .scripts
            .increment
            .key(self.key(key))
            .key(self.usage_key())
            .arg(delta)
            .arg(key.len())
            .arg(limits.max_keys)
            .arg(limits.max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(|err| {
                if err.to_string().contains("not an integer") {
                    KvError::Value(format!(
                        "the value of {key:?} is not a number, so it cannot be incremented"
                    ))
                } else {
                    self.limit_error(err)
                }
            })
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        let limits = self.inner.limits;
        limits.check(key, Some(value))?;
        let mut conn = self.connection().await?;
        let swapped: i64 = self
            .inner
            .scripts
            .swap
            .key(self.key(key))
            .key(self.usage_key())
            .arg(value)
            .arg(key.len())
            .arg(limits.max_keys)
            .arg(limits.max_bytes)
            .arg(expected.unwrap_or_default())
            .arg(if expected.is_none() { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.limit_error(err))?;
        Ok(swapped == 1)
    }

    async fn usage(&self) -> Result<Usage, KvError> {
        let mut conn = self.connection().await?;
        let (keys, bytes): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.usage_key())
            .arg("keys")
            .arg("bytes")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(Usage {
            keys: keys.unwrap_or(0).max(0) as u64,
            bytes: bytes.unwrap_or(0).max(0) as u64,
        })
    }
}

/// Escapes the glob characters of a Redis `MATCH` pattern.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
