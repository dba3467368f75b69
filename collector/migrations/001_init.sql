-- The collector's schema, version 1. Readings are intervals keyed by (node, meter, seq), as Open
-- Energy Dashboard keeps its readings (a value over [start_timestamp, end_timestamp), start before
-- end); the CHECK constraints hold the payload contract of docs/protocol.md, so a reading that
-- breaks it cannot be stored by any path.

CREATE TABLE nodes (
    node text PRIMARY KEY CONSTRAINT node_id CHECK (node ~ '^[^/+#[:space:]]{1,64}$'),
    -- The last status message (docs/protocol.md#status-and-will), when it last changed, and
    -- whether it came retained (published before the collector subscribed).
    status jsonb,
    status_at timestamptz,
    status_retained boolean,
    first_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meters (
    node text NOT NULL REFERENCES nodes (node),
    meter text NOT NULL CONSTRAINT meter_id CHECK (meter ~ '^[A-Za-z0-9_-]{1,32}$' AND meter NOT IN ('cmd', 'reply')),
    quantity text NOT NULL CONSTRAINT quantity_named CHECK (quantity <> ''),
    unit text NOT NULL,
    -- The longest interval of a UTC reading of this meter (ms): a range query looks this far
    -- back before `from` for readings that overlap it, through the (start_time) index.
    max_span_ms bigint NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, meter)
);

CREATE TABLE readings (
    node text NOT NULL,
    meter text NOT NULL,
    seq bigint NOT NULL CONSTRAINT seq_positive CHECK (seq > 0),
    -- Equal to seq, or the first of the readings a merged reading stands for.
    first_seq bigint NOT NULL CONSTRAINT first_seq_range CHECK (first_seq > 0 AND first_seq <= seq),
    boot bigint NOT NULL CONSTRAINT boot_nonnegative CHECK (boot >= 0),
    -- What start_time and end_time count: Unix ms, or seconds since boot `boot`.
    time_base text NOT NULL CONSTRAINT time_base_known CHECK (time_base IN ('utc_ms', 'uptime_s')),
    start_time bigint NOT NULL CONSTRAINT start_nonnegative CHECK (start_time >= 0),
    end_time bigint,
    -- An amount: delta over the interval and the register at its end, in the meter's unit. For a
    -- `partial` merged reading, delta is the part not already stored, reported_delta the message's.
    delta double precision CONSTRAINT delta_nonnegative CHECK (delta >= 0),
    total double precision CONSTRAINT total_nonnegative CHECK (total >= 0),
    reported_delta double precision,
    -- A level: over the interval.
    min double precision,
    mean double precision,
    max double precision,
    estimated boolean NOT NULL DEFAULT false,
    gap boolean NOT NULL DEFAULT false,
    after_seq bigint,
    replay boolean NOT NULL DEFAULT false,
    partial boolean NOT NULL DEFAULT false,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, meter, seq),
    FOREIGN KEY (node, meter) REFERENCES meters (node, meter),
    CONSTRAINT interval_order CHECK (gap OR (end_time IS NOT NULL AND start_time < end_time)),
    CONSTRAINT gap_shape CHECK (
        NOT gap
        OR (end_time IS NULL AND first_seq = seq AND after_seq IS NOT NULL AND after_seq >= 0 AND after_seq < seq
            AND total IS NOT NULL AND delta IS NULL AND min IS NULL AND mean IS NULL AND max IS NULL AND NOT partial)
    ),
    CONSTRAINT after_seq_on_gap CHECK (gap OR after_seq IS NULL),
    CONSTRAINT amount_or_level CHECK (
        gap
        OR (delta IS NOT NULL AND total IS NOT NULL AND min IS NULL AND mean IS NULL AND max IS NULL)
        OR (delta IS NULL AND total IS NULL AND min IS NOT NULL AND mean IS NOT NULL AND max IS NOT NULL)
    ),
    CONSTRAINT level_order CHECK (min <= mean AND mean <= max),
    CONSTRAINT partial_shape CHECK (
        (NOT partial AND reported_delta IS NULL)
        OR (partial AND first_seq < seq AND (reported_delta IS NULL OR reported_delta >= delta))
    )
);

-- Range queries: a meter's UTC readings by start time.
CREATE INDEX readings_utc_start ON readings (node, meter, start_time, seq) WHERE time_base = 'utc_ms';

-- A reading delivered again with another content under the same key: kept aside, never stored
-- over the first. One row per distinct content, with how often it came.
CREATE TABLE integrity_conflicts (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    meter text NOT NULL,
    seq bigint NOT NULL,
    topic text NOT NULL,
    note text NOT NULL,
    stored jsonb,
    received text NOT NULL,
    times integer NOT NULL DEFAULT 1,
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX integrity_conflicts_content ON integrity_conflicts (node, meter, seq, md5(received));

-- Messages (or elements of a message) refused, with the reason: never in readings.
CREATE TABLE rejected_messages (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL DEFAULT '',
    -- The first bytes of the payload (or of the refused element), as text.
    payload text NOT NULL,
    payload_bytes integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_messages_reason ON rejected_messages (reason);
