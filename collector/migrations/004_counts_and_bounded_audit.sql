-- What /api/nodes needs kept small, and the audit tables kept bounded.
--
-- meter_counts: per meter, the readings, gaps and seqs stored, kept by the database itself on each
-- INSERT into readings (readings are never updated nor deleted), so that /api/nodes reads one row
-- per meter instead of every reading.

CREATE TABLE meter_counts (
    node text NOT NULL,
    meter text NOT NULL,
    readings bigint NOT NULL DEFAULT 0,
    gaps bigint NOT NULL DEFAULT 0,
    first_seq bigint,
    last_seq bigint,
    -- The seqs the rows stand for (a merged reading counts for first_seq..seq): last_seq - first_seq
    -- + 1 minus this is how many seqs no row covers.
    seqs_held bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (node, meter),
    FOREIGN KEY (node, meter) REFERENCES meters (node, meter)
);

INSERT INTO meter_counts (node, meter, readings, gaps, first_seq, last_seq, seqs_held)
SELECT node, meter, count(*) FILTER (WHERE NOT gap), count(*) FILTER (WHERE gap), min(first_seq), max(seq),
       sum(seq - first_seq + 1)
FROM readings GROUP BY node, meter;

CREATE FUNCTION count_readings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    -- Meter by meter in the order of the key: two transactions that count some of the same meters
    -- (collectors sharing the messages) take the rows' locks in the same order, so neither waits
    -- for a lock the other holds while it holds one the other waits for.
    FOR r IN SELECT node, meter, count(*) FILTER (WHERE NOT gap) AS readings, count(*) FILTER (WHERE gap) AS gaps,
                    min(first_seq) AS first_seq, max(seq) AS last_seq, sum(seq - first_seq + 1) AS seqs_held
             FROM inserted GROUP BY node, meter ORDER BY node, meter
    LOOP
        INSERT INTO meter_counts AS c (node, meter, readings, gaps, first_seq, last_seq, seqs_held)
        VALUES (r.node, r.meter, r.readings, r.gaps, r.first_seq, r.last_seq, r.seqs_held)
        ON CONFLICT (node, meter) DO UPDATE SET
            readings = c.readings + EXCLUDED.readings,
            gaps = c.gaps + EXCLUDED.gaps,
            first_seq = least(c.first_seq, EXCLUDED.first_seq),
            last_seq = greatest(c.last_seq, EXCLUDED.last_seq),
            seqs_held = c.seqs_held + EXCLUDED.seqs_held;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER readings_counts AFTER INSERT ON readings
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION count_readings();

-- A meter's gap elements, newest first, without reading its readings.
CREATE INDEX readings_gaps ON readings (node, meter, seq) WHERE gap;

-- audit_counts: every refusal and every integrity conflict counted, by reason, for ever; the rows
-- of rejected_messages and integrity_conflicts are only the newest examples. Hostile input (a
-- flood of malformed messages, of readings that differ from the stored ones) then grows counters,
-- not tables.

CREATE TABLE audit_counts (
    -- 'rejected' (rejected_messages) or 'conflict' (integrity_conflicts).
    audit text NOT NULL,
    -- The refusal's reason; for a conflict, 'differs' (a reading delivered again with another
    -- content) or 'less' (a merged reading that carries less than what is stored).
    reason text NOT NULL,
    count bigint NOT NULL DEFAULT 0,
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (audit, reason)
);

INSERT INTO audit_counts (audit, reason, count, first_at, last_at)
SELECT 'rejected', reason, count(*), min(received_at), max(received_at) FROM rejected_messages GROUP BY reason;
INSERT INTO audit_counts (audit, reason, count, first_at, last_at)
SELECT 'conflict', CASE WHEN note LIKE 'a merged reading%' THEN 'less' ELSE 'differs' END, sum(times), min(first_at),
       max(last_at)
FROM integrity_conflicts GROUP BY 2;

DROP INDEX rejected_messages_reason;
CREATE INDEX rejected_messages_reason ON rejected_messages (reason, id);
CREATE INDEX integrity_conflicts_id ON integrity_conflicts (id);

-- The newest 100 refused messages of each reason are kept (the reasons are a short list the
-- collector names: docs/collector.md#bad-input).
CREATE FUNCTION bound_rejected() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_counts AS c (audit, reason, count) VALUES ('rejected', NEW.reason, 1)
    ON CONFLICT (audit, reason) DO UPDATE SET count = c.count + 1, last_at = now();
    DELETE FROM rejected_messages WHERE reason = NEW.reason AND id < (
        SELECT id FROM rejected_messages WHERE reason = NEW.reason ORDER BY id DESC OFFSET 99 LIMIT 1);
    RETURN NULL;
END $$;

CREATE TRIGGER rejected_messages_bound AFTER INSERT ON rejected_messages
    FOR EACH ROW EXECUTE FUNCTION bound_rejected();

-- The newest 1,000 distinct conflicting contents are kept; every delivery of one is counted.
CREATE FUNCTION bound_conflicts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_counts AS c (audit, reason, count)
    VALUES ('conflict', CASE WHEN NEW.note LIKE 'a merged reading%' THEN 'less' ELSE 'differs' END, 1)
    ON CONFLICT (audit, reason) DO UPDATE SET count = c.count + 1, last_at = now();
    IF TG_OP = 'INSERT' THEN
        DELETE FROM integrity_conflicts WHERE id < (
            SELECT id FROM integrity_conflicts ORDER BY id DESC OFFSET 999 LIMIT 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER integrity_conflicts_bound AFTER INSERT OR UPDATE ON integrity_conflicts
    FOR EACH ROW EXECUTE FUNCTION bound_conflicts();
