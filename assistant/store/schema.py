"""The chat history's SQLite schema, as a list of migrations."""

from __future__ import annotations

# Each migration is a sequence of statements run in one transaction; migration i
# (1-based) brings the schema to ``PRAGMA user_version = i``.  Never edit a
# released migration: append a new one.
_V1 = (
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX conversations_by_updated ON conversations(updated DESC, id DESC)",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
        text TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'stopped', 'failed')),
        created REAL NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
    """CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        ext TEXT NOT NULL,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE message_images (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES images(sha256),
        PRIMARY KEY (message_id, position)
    ) WITHOUT ROWID""",
    "CREATE INDEX message_images_by_sha256 ON message_images(sha256)",
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content='messages', content_rowid='id', tokenize='trigram'
    )""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END""",
)

# Each message hangs under the one before it (``parent_id``; NULL for a conversation's
# first), so a question edited or a reply regenerated is a sibling of the message it
# replaces: both stay, and ``chosen`` marks the one of each set of siblings shown (and
# sent to the model).  The conversation is the path of chosen messages from the first.
LINK_IN_ORDER = (
    "UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p"
    " WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id)"
)
_V2 = (
    "ALTER TABLE messages ADD COLUMN parent_id INTEGER",
    "ALTER TABLE messages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 1",
    LINK_IN_ORDER,  # what was saved before versions is one line of messages
    "CREATE INDEX messages_by_parent ON messages(parent_id)",
)

# Vectors of the image search model (CLIP/SigLIP) for search by meaning: one per saved
# image (``item`` is its SHA-256) and one per message text (``item`` is the message id),
# per model.  An empty ``vector`` marks an item that could not be embedded (a broken
# file), so it is not tried again.  A message's vector goes when its text changes or it
# is deleted; an image's when its file is cleaned up.
# Kept short: the schema's text must fit the database's first page (4 KB), or a damaged
# page elsewhere can hide every table from salvage.  ``kind`` is 'image' or 'text'.
# The key starts with (kind, item), so the triggers find a message's or an image's
# vectors through it instead of scanning the table.
_V3 = (
    "CREATE TABLE embeddings(model TEXT NOT NULL,kind TEXT NOT NULL,item TEXT NOT NULL,"
    "vector BLOB NOT NULL,PRIMARY KEY(kind,item,model))WITHOUT ROWID",
    "CREATE TRIGGER emb_msg_del AFTER DELETE ON messages BEGIN "
    "DELETE FROM embeddings WHERE kind='text' AND item=CAST(old.id AS TEXT);END",
    "CREATE TRIGGER emb_msg_text AFTER UPDATE OF text ON messages WHEN old.text IS NOT new.text BEGIN "
    "DELETE FROM embeddings WHERE kind='text' AND item=CAST(old.id AS TEXT);END",
    "CREATE TRIGGER emb_img_del AFTER DELETE ON images BEGIN "
    "DELETE FROM embeddings WHERE kind='image' AND item=old.sha256;END",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)
