-- What an attempt's response was, beyond its status: why its body was read only in part (over the 64 KiB read
-- limit, still arriving at the request's deadline, or the connection lost mid-body), and where a redirect
-- pointed (redirects are never followed). Both NULL for the usual answer, and for every row written before.
-- New nullable columns without defaults change only the catalog; the checks are NOT VALID because every
-- existing row is NULL there, so they need no scan of the (large, append-only) attempt log.
ALTER TABLE webhook_delivery_attempts
  ADD COLUMN response_cut_off text,
  ADD COLUMN redirect_location text,
  ADD CONSTRAINT webhook_delivery_attempts_response_cut_off_check
    CHECK (response_cut_off IN ('size_limit', 'deadline', 'connection_lost')) NOT VALID,
  ADD CONSTRAINT webhook_delivery_attempts_redirect_location_check
    CHECK (char_length(redirect_location) <= 1024) NOT VALID;
