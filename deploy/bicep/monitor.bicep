// Azure Monitor Logs for plmon's alerts (issue 16): the custom table PlmonFindings_CL in a Log Analytics workspace
// (the one Microsoft Sentinel runs on, for the analytics rule in deploy/sentinel/), a data collection rule with its
// own ingestion endpoint (kind Direct: no separate DCE) whose stream declaration matches plmon's rows, and
// Monitoring Metrics Publisher on that rule for plmon's identity (the least role the Logs Ingestion API accepts).
// Deploy into the workspace's resource group; main.bicep does it when logAnalyticsWorkspaceId is set. Its outputs
// are the channel's keys: {type: azure-monitor, endpoint: <logsIngestionEndpoint>, rule_id: <dcrImmutableId>,
// stream: Custom-PlmonFindings_CL}.
targetScope = 'resourceGroup'

@description('Name of the existing Log Analytics workspace (in this resource group) that receives the rows.')
param workspaceName string

@description('Principal (object) id of plmon\'s identity: it gets Monitoring Metrics Publisher on the rule.')
param principalId string

@description('Region of the data collection rule: the workspace\'s (by default this resource group\'s).')
param location string = resourceGroup().location

@description('Name of the data collection rule.')
param dataCollectionRuleName string = 'plmon-findings'

@description('Days the workspace keeps plmon\'s rows (interactive retention of the table).')
@minValue(4)
@maxValue(730)
param retentionInDays int = 90

var tableName = 'PlmonFindings_CL'
var streamName = 'Custom-${tableName}'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// The row plmon sends (alerts/azure_monitor.py COLUMNS; tests/deploy/test_templates.py holds the three lists equal).
var columns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'AlertId', type: 'string' }
  { name: 'AlertKind', type: 'string' }
  { name: 'CheckId', type: 'string' }
  { name: 'Severity', type: 'string' }
  { name: 'Title', type: 'string' }
  { name: 'Message', type: 'string' }
  { name: 'ResourceId', type: 'string' }
  { name: 'SubscriptionId', type: 'string' }
  { name: 'TenantId', type: 'string' }
  { name: 'State', type: 'string' }
  { name: 'FirstSeen', type: 'datetime' }
  { name: 'LastSeen', type: 'datetime' }
  { name: 'ResolvedAt', type: 'datetime' }
  { name: 'PreviousSeverity', type: 'string' }
  { name: 'Evidence', type: 'dynamic' }
  { name: 'Remediation', type: 'string' }
  { name: 'Truncated', type: 'dynamic' }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

// Table columns spell the date type dateTime; the stream declaration spells it datetime.
resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: tableName
      columns: [for c in columns: {
        name: c.name
        type: c.type == 'datetime' ? 'dateTime' : c.type
      }]
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dataCollectionRuleName
  location: location
  kind: 'Direct'
  properties: {
    streamDeclarations: {
      '${streamName}': {
        columns: columns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'plmonWorkspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'plmonWorkspace'
        ]
        transformKql: 'source'
        outputStream: streamName
      }
    ]
  }
  dependsOn: [
    table
  ]
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rule.id, principalId, monitoringMetricsPublisher)
  scope: rule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output logsIngestionEndpoint string = rule.properties.endpoints.logsIngestion
output dcrImmutableId string = rule.properties.immutableId
output stream string = streamName
output tableName string = table.name
