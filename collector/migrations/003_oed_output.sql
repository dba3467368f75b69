-- The Open Energy Dashboard output's position (collector/oed.ts): per meter, what has been posted
-- to OED's CSV readings upload, so that a restarted collector neither posts a reading twice nor
-- skips one. Written only by the output, after OED has accepted a batch.

CREATE TABLE oed_positions (
    node text NOT NULL,
    meter text NOT NULL,
    -- Every reading with a seq up to this one that was stored when the output last read the meter
    -- has been posted (or was not for OED: a gap, a reading in uptime). Seqs that were not stored
    -- then are in oed_holes.
    posted_seq bigint NOT NULL DEFAULT 0 CONSTRAINT posted_seq_nonnegative CHECK (posted_seq >= 0),
    -- The OED meter name it went to, the end (Unix ms) of the latest reading posted, how many.
    oed_meter text,
    posted_until bigint,
    readings_posted bigint NOT NULL DEFAULT 0,
    posted_at timestamptz,
    -- OED's last refusal (a 4xx answer): the meter is not posted again until the collector restarts.
    refused_at timestamptz,
    refusal text,
    PRIMARY KEY (node, meter),
    FOREIGN KEY (node, meter) REFERENCES meters (node, meter)
);

-- Seqs at or below posted_seq that no stored reading covered when the output passed them: numbers
-- a reboot skipped, readings lost in a gap, or readings still to come (a node draining its
-- backlog, a replay, a transaction not yet committed). A reading that arrives later with its seq
-- in a hole is a late reading: it is posted, and its seqs leave the hole.
CREATE TABLE oed_holes (
    node text NOT NULL,
    meter text NOT NULL,
    from_seq bigint NOT NULL,
    to_seq bigint NOT NULL,
    CONSTRAINT hole_range CHECK (0 < from_seq AND from_seq <= to_seq),
    PRIMARY KEY (node, meter, from_seq),
    FOREIGN KEY (node, meter) REFERENCES oed_positions (node, meter)
);
