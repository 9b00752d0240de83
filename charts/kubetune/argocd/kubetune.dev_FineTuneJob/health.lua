-- Argo CD health check for kubetune.dev/FineTuneJob.
--
-- Install it as `resource.customizations.health.kubetune.dev_FineTuneJob` in the argocd-cm
-- ConfigMap (docs/operations.md, examples/gitops/argocd-cm-patch.yaml). Argo CD runs it with
-- the live object as `obj` in a sandboxed Lua 5.1 without `os` or `io`.
--
--   status.phase                          Argo CD health
--   (none yet)                            Progressing  the operator has not seen the job yet
--   Pending Preparing Training Evaluating Progressing
--   Succeeded                             Healthy
--   Failed                                Degraded
--   Suspended                             Suspended
--   anything else                         Unknown
--
-- A status computed for an older spec (status.observedGeneration < metadata.generation) reads
-- Progressing whatever its phase: after an edit, "Healthy" must wait for the operator.
local hs = {}

-- The message of the condition that changed last (RFC 3339 times sort as strings), with its
-- reason; "" when there is none.
local function latest_condition(status)
  local latest = nil
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.message ~= nil and condition.message ~= "" then
        if latest == nil or (condition.lastTransitionTime or "") > (latest.lastTransitionTime or "") then
          latest = condition
        end
      end
    end
  end
  if latest == nil then
    return ""
  end
  if latest.reason ~= nil and latest.reason ~= "" then
    return latest.reason .. ": " .. latest.message
  end
  return latest.message
end

-- "step 120/1000 (12%), loss 1.23, ETA 1h02m" from status.progress; "" when not training yet.
local function progress_text(status)
  local p = status.progress
  if p == nil then
    return ""
  end
  local parts = {}
  if p.summary ~= nil then
    table.insert(parts, "step " .. p.summary)
  end
  if p.loss ~= nil then
    table.insert(parts, string.format("loss %.4g", p.loss))
  end
  if p.eta ~= nil then
    table.insert(parts, "ETA " .. p.eta)
  end
  return table.concat(parts, ", ")
end

local function join(phase, detail)
  if detail == "" then
    return phase
  end
  return phase .. ": " .. detail
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubetune operator to pick up the job"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to act on generation %d (status is for %d)", generation, observed)
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  local artifact = ""
  if status.artifact ~= nil and status.artifact.uri ~= nil then
    artifact = "artifact " .. status.artifact.uri
  end
  hs.message = join(phase, artifact)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = join(phase, latest_condition(status))
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = join(phase, latest_condition(status))
elseif phase == "Training" then
  hs.status = "Progressing"
  local detail = progress_text(status)
  if detail == "" then
    detail = latest_condition(status)
  end
  hs.message = join(phase, detail)
elseif phase == "Pending" or phase == "Preparing" or phase == "Evaluating" then
  hs.status = "Progressing"
  hs.message = join(phase, latest_condition(status))
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
