-- MMS gets a price of its own: per message, per destination prefix, in rate decks and carriers' cost decks.
-- NULL (every row written before): no MMS to that prefix.
ALTER TABLE rates ADD COLUMN per_mms BIGINT;
ALTER TABLE carrier_rates ADD COLUMN per_mms BIGINT;
