-- Merged readings (first_seq < seq) by their last seq. A reading that arrives after a merged
-- reading covering it (delivered late, through another collector of a group) is found through
-- this index and not stored: its energy is in the merged one. Few rows: a node merges readings
-- only when its store fills during a long outage.

CREATE INDEX readings_merged ON readings (node, meter, seq) INCLUDE (first_seq) WHERE first_seq < seq;
