-- pg_persona 0.1.0 -> 0.2.0
--
-- Campaigns: persona.campaigns.arm_costs, each arm's own cost. Text models: any change to a row
-- of persona.bert_model_store, including a direct UPDATE, takes a new version number (backends
-- rebuild their cached sessions). 0.2.0 also adds the
-- "mean+cls" pooling and pooling lists in bert_train_classifier (no catalog change) and ships a
-- retrained default sentiment head: SELECT bert_register_defaults(replace => true) installs it
-- in a database created with 0.1.0.

\echo Use "ALTER EXTENSION pg_persona UPDATE TO '0.2.0'" to load this file. \quit

-- Any change to a stored text model, including a direct UPDATE of this table, takes a new
-- version number, so every backend's cached session is rebuilt at its next transaction.
CREATE FUNCTION persona.bert_model_store_new_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.version := pg_catalog.nextval('persona.bert_model_version_seq');
    RETURN NEW;
END
$$;
CREATE TRIGGER new_version BEFORE UPDATE ON persona.bert_model_store
    FOR EACH ROW EXECUTE FUNCTION persona.bert_model_store_new_version();

-- Each arm's own cost (campaign_metrics uses it instead of attributing cost to arms).
ALTER TABLE persona.campaigns
    ADD COLUMN arm_costs jsonb CHECK (arm_costs IS NULL OR jsonb_typeof(arm_costs) = 'object');
