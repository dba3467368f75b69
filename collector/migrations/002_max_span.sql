-- meters.max_span_ms kept by the database itself, whatever inserts the readings: after each
-- statement, the longest UTC interval it inserted per meter raises the meter's figure.

CREATE FUNCTION raise_max_span() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meters m SET max_span_ms = x.span
    FROM (SELECT node, meter, max(end_time - start_time) AS span FROM inserted
          WHERE time_base = 'utc_ms' AND end_time IS NOT NULL GROUP BY node, meter) x
    WHERE m.node = x.node AND m.meter = x.meter AND m.max_span_ms < x.span;
    RETURN NULL;
END $$;

CREATE TRIGGER readings_max_span AFTER INSERT ON readings
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION raise_max_span();
